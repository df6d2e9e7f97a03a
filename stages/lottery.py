"""lottery: iterative magnitude pruning with resetting (Frankle & Carbin 2019) + controls, 3 seeds.

Trains its own network (lottery.model, default LeNet-300-100, Glorot init) from w0 per seed.
READS THE TEST SPLIT: the paper's figure reports test accuracy at the early-stop iteration;
every output of this stage says so.  Writes plots/lottery/{rounds,summary}.csv, lottery.png,
metrics/lottery.json (claim check) and the sparsest ticket as variants/lottery/.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import torch
from tqdm.auto import tqdm

from compress.data import load_meta, load_split
from compress.models import build_model, count_params, prunable_layers
from compress.prune.imp import remaining_after, rounds_to_target, run_lottery
from compress.prune.masks import dense_state_dict
from compress.prune.report import claim, plot, summarize
from compress.prune.sparse_io import save_sparse
from compress.variants import Form, Manifest, model_spec, write_variant
from stages.common import load_params_or_exit, mlflow_run, stage_args, write_json

NOTE = "reads the test split: test accuracy at the early-stop iteration is the paper's figure (Frankle & Carbin 2019)"


def main() -> None:
    args = stage_args(__doc__)
    P = load_params_or_exit(args.params)
    C = P.lottery
    cfg = C.trainer()
    meta = load_meta(P.data.out)
    spec = model_spec(C.model, {**C.model_kwargs, "init": C.init}, meta["input_shape"], meta["num_classes"])

    def build(init_seed: int):
        torch.manual_seed(init_seed)
        return build_model(spec["name"], spec["input_shape"], spec["num_classes"], **spec["kwargs"])

    n_rounds = rounds_to_target(build(0), C.rate, C.effective_output_rate, C.target_remaining)
    if C.threads:
        torch.set_num_threads(C.threads)
    train, val, test = (load_split(P.data.out, s) for s in ("train", "val", "test"))
    with_controls = sum(1 for r in range(1, n_rounds + 1)
                        if remaining_after(build(0), C.rate, C.effective_output_rate, r) <= C.controls_max_remaining + 1e-12)
    runs = len(C.seeds) * (1 + n_rounds + with_controls * len(C.controls))
    print(f"lottery: {C.model} preset={C.preset} {cfg.max_iterations} it/run, {n_rounds} rounds, {runs} trainings; {NOTE}")
    rows: list[dict] = []
    tickets: dict[tuple[int, int], dict] = {}
    bar = tqdm(total=runs, desc="lottery trainings")
    with mlflow_run(P, "lottery", ["lottery"], meta, extra_tags={"reads_test_split": "true"}) as mlf:
        def on_result(row: dict) -> None:
            rows.append(row)
            bar.update(1)
            tqdm.write(f"  seed {row['seed']} round {row['round']:>2} {row['kind']:<11} {100 * row['remaining']:6.2f}% "
                       f"es_it {row['early_stop_iteration']:>5} test_acc {row['test_acc']:.4f}")
            mlf.log_metrics({f"s{row['seed']}_{row['kind']}_test_acc": row["test_acc"],
                             f"s{row['seed']}_{row['kind']}_early_stop": row["early_stop_iteration"]}, step=row["round"])

        def on_ticket(r: int, model) -> None:
            tickets[(seed, r)] = dense_state_dict(model)

        for seed in C.seeds:
            run_lottery(build, train, val, test, cfg, seed=seed, rate=C.rate, output_rate=C.effective_output_rate,
                        target_remaining=C.target_remaining, rewind_iteration=C.rewind_iteration,
                        controls=tuple(C.controls), controls_max_remaining=C.controls_max_remaining,
                        on_result=on_result, on_ticket=on_ticket)
        bar.close()
        summary = summarize(rows)
        check = claim(summary)
        plots = Path(C.plots)
        plots.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(rows).assign(remaining_pct=lambda d: 100 * d["remaining"]).to_csv(plots / "rounds.csv", index=False)
        summary.to_csv(plots / "summary.csv", index=False, float_format="%.6g")
        png = plot(summary, plots / "lottery.png", f"IMP on {C.model} ({meta['dataset']}, preset {C.preset}, "
                                                      f"{cfg.max_iterations} it/round)")
        mlf.log_artifact(str(png))
        mlf.log_artifact(str(plots / "summary.csv"))
        mlf.log_metrics({"dense_test_acc": check["dense_test_acc"], "claim_holds": float(check["holds"]),
                         "train_seconds": sum(r["seconds"] for r in rows)})

        # The sparsest ticket of the first seed whose validation accuracy matches its dense run
        # (chosen on validation, never on test) becomes a variant for the evaluate stage.
        s0 = [r for r in rows if r["seed"] == C.seeds[0] and r["kind"] == "ticket"]
        ok = [r for r in s0 if r["val_acc"] >= s0[0]["val_acc"]] or s0[:1]
        pick = min(ok, key=lambda r: r["remaining"])
        vdir = Path(C.out) / f"lottery-ticket-{C.model}"
        shutil.rmtree(vdir.parent, ignore_errors=True)
        vdir.mkdir(parents=True)
        state = tickets[(C.seeds[0], pick["round"])]
        model = build(0)
        model.load_state_dict(state)
        keys = [f"{n}.weight" for n in prunable_layers(model)]
        save_sparse(state, vdir / "model.safetensors", keys)
        write_variant(vdir, Manifest(
            variant=vdir.name, stage="lottery", method="lottery-ticket", model=spec, dataset=meta["dataset"],
            seed=C.seeds[0], avg_weight_bits=32.0, act_bits=None, sparsity=round(1 - pick["remaining"], 6),
            params=count_params(model, nonzero=True), deploy=Form(runtime="sparse-eager", files=["model.safetensors"]),
            notes=f"IMP round {pick['round']} ticket (sparsest with val acc >= dense, chosen on val); final weights of "
                  f"{cfg.max_iterations} iterations; decoded to dense at load", extra={"round": pick["round"]}))

    write_json("metrics/lottery.json", {
        "dataset": meta["dataset"], "dataset_substituted": meta["substituted"], "reads_test_split": True, "note": NOTE,
        "model": C.model, "preset": C.preset, "trainer": vars(cfg), "rounds": n_rounds, "seeds": C.seeds,
        "rate": C.rate, "output_rate": C.effective_output_rate, "rewind_iteration": C.rewind_iteration,
        "claim": check})  # timings (not reproducible) are in rounds.csv and MLflow
    print(f"lottery: dense test acc {check['dense_test_acc']:.4f}; claim (ticket <=10% >= dense, reinit clearly worse) "
          f"holds: {check['holds']} at {check['holds_at_remaining_pct']} % remaining")


if __name__ == "__main__":
    main()
