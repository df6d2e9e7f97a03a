"""lottery: iterative magnitude pruning with resetting (Frankle & Carbin 2019) + controls, 3 seeds.

Trains its own network (lottery.model, default LeNet-300-100, Glorot init) from w0 per seed, each
training to its validation early stop.  READS THE TEST SPLIT: the paper's figure reports test
accuracy at the early-stop iteration; every output of this stage says so.  Writes
plots/lottery/{rounds,summary}.csv, lottery.png, metrics/lottery.json (claim check) and the
sparsest ticket matching the dense run on validation as variants/lottery/.
"""
from __future__ import annotations

from tqdm.auto import tqdm

from compress.prune import lottery
from compress.variants import model_spec
from dashboards.methods import lottery_figure
from stages.common import Stage


def main() -> None:
    st = Stage("lottery", __doc__)
    C, meta = st.P.lottery, st.meta
    spec = model_spec(C.model, {**C.model_kwargs, "init": C.init}, meta["input_shape"], meta["num_classes"])
    plan = lottery.plan(C, spec)
    print(f"lottery: {plan.describe(C)}; {lottery.NOTE}")
    train, val, test = st.split("train", "val", "test")
    bar = tqdm(total=plan.trainings, desc="lottery trainings")
    with st.run(reads_test_split="true") as mlf:
        def on_result(row: dict) -> None:
            bar.update(1)
            tqdm.write(f"  seed {row['seed']} round {row['round']:>2} {row['kind']:<11} {100 * row['remaining']:6.2f}% "
                       f"early stop {row['early_stop_iteration']:>5} test_acc {row['test_acc']:.4f}")
            mlf.log_metrics({f"s{row['seed']}_{row['kind']}_test_acc": row["test_acc"],
                             f"s{row['seed']}_{row['kind']}_early_stop": row["early_stop_iteration"]}, step=row["round"])

        res = lottery.run(C, plan, train, val, test, on_result)
        bar.close()
        lottery.write_tables(res, st.plot("rounds.csv"), st.plot("summary.csv"))
        mlf.log_artifact(str(lottery_figure(res.summary, st.plot("lottery.png"), plan.title(C, meta["dataset"]))))
        mlf.log_artifact(st.plot("summary.csv"))
        mlf.log_metrics({"dense_test_acc": res.claim["dense_test_acc"], "claim_holds": float(res.claim["holds"]),
                         "train_seconds": sum(r["seconds"] for r in res.rows)})
        lottery.export_ticket(st.variants / f"lottery-ticket-{C.model}", C, plan, res, spec, meta["dataset"])
    st.write_metrics(lottery.metrics(C, plan, res))  # timings (not reproducible) are in rounds.csv and MLflow
    print(f"lottery: dense test acc {res.claim['dense_test_acc']:.4f}; {res.claim['statement']}")


if __name__ == "__main__":
    main()
