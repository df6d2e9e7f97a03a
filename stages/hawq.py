"""hawq: Hessian-aware mixed precision (HAWQ, Dong et al. 2019) vs uniform precision of the same or smaller size.

Hessian of the baseline's loss on calibration batches (never test) -> per-block top eigenvalue λ_i (power
iteration) and Tr(H_i) -> bit allocations per size budget: ``hawq.allocator`` (sensitivity: the lecture's
Algorithm 2 on S_i = λ_i/n_i; ilp: exact, HAWQ-V3 style) and ``hawq.compare_allocators``, plus uniform widths
-> the same fine-tune for every allocation and seed (Ω-ordered block-wise QAT, then joint QAT), in worker
processes -> variants (bit-packed + quant-sim), Table VI, λ bar chart, 1-D landscapes and the claim on val:
mixed >= every uniform width of the same or smaller size, and within 1 pp of fp32 at ~2.5 bits.
"""
from __future__ import annotations

import json
from pathlib import Path

from compress.hessian import hawq
from compress.quant.export import write_quant_variant
from compress.quant.observers import calibrate
from compress.tables import write_csv
from compress.train import evaluate_model, seed_everything
from dashboards.methods import hawq_report
from stages.common import Stage
from stages.pipeline import HAWQ_ALLOCATION, reports


def main() -> None:
    st = Stage("hawq", __doc__)
    P, H, meta = st.P, st.P.hawq, st.meta
    model, spec = st.baseline()
    blocks = st.load(hawq.resolve_blocks, model, H.blocks)  # everything that needs the model is checked before any work
    calib, train, val = st.split("calib", "train", "val")
    hb = st.load(hawq.calib_batches, calib, H.hessian.batch_size, H.hessian.batches)
    seed_everything(P.seed)
    report, fp32_val = Path(reports("hawq")), evaluate_model(model, *val)[1]
    with st.run() as mlf:
        stats = hawq.block_spectra(model, blocks, hb, H.hessian.tol, H.hessian.max_iters, H.hessian.samples, seed=P.seed,
                                   progress=lambda s: print(f"hawq: {s.name}: λ={s.eigenvalue:.4g} Tr={s.trace:.4g} ({s.hvps} HVPs, "
                                                            f"{s.seconds:.1f}s{'' if s.converged else ', NOT converged'})"))
        plans = hawq.plan_allocations(stats, hawq.error_table(model, blocks, H.bit_candidates), H.bit_candidates,
                                      H.budgets_avg_bits, [H.allocator, *H.compare_allocators], H.uniform_bits, H.objective)
        ranges = calibrate(model, calib[0], [H.observer], bits=H.act_bits)[H.observer] if H.act_bits else None
        jobs = [(p.alloc.bits, s) for p in plans for s in H.seeds]
        results = hawq.finetune_jobs(model, blocks, stats, jobs, train, val, H.finetune, H.joint, act_bits=H.act_bits,
                                     act_ranges=ranges, monitor=(val[0][:1000], val[1][:1000]), workers=H.workers)
        rows = hawq.result_rows(plans, H.seeds, results)
        for row, res in zip(rows, results):
            name = f"{row['plan']}-a{H.act_bits or 'fp'}-s{row['seed']}"
            row["deploy_bytes"] = write_quant_variant(
                st.variants / name, hawq.restore(model, blocks, res, H.act_bits, ranges), name, "hawq", f"hawq-{row['method']}",
                spec, meta["dataset"], row["seed"], row["avg_bits"], H.act_bits,
                notes=f"{row['method']} allocation {dict(zip([b.name for b in blocks], res.bits))}; Ω-order block-wise QAT "
                      f"{res.order}{' + joint QAT' if H.joint else ''}")
            mlf.log_metrics({f"val_acc.{name}": row["val_acc"], f"ptq_val_acc.{name}": row["ptq_val_acc"]})
            print(f"hawq: {name}: bits {res.bits} avg {row['avg_bits']:.3f}: val acc PTQ {row['ptq_val_acc']:.4f} -> QAT {row['val_acc']:.4f}")
        claim = hawq.claim(rows, fp32_val, allocator=H.allocator)
        ft = f"{H.finetune.max_iterations} steps per block (Ω order), lr {H.finetune.lr:g}" + (
            f", then {H.joint.max_iterations} joint steps, lr {H.joint.lr:g}" if H.joint else "")
        curves = {b.name: hawq.loss_landscape(model, b, s.eigvec, hb, H.landscape_radius, H.landscape_points) for b, s in zip(blocks, stats)}
        table = hawq_report(report, f"HAWQ on {meta['dataset']}", stats, plans, claim, rows, results, curves, H.act_bits, H.objective, ft)
        write_csv(st.plot("eigenvalues.csv"), [{"block": s.name, "lambda": s.eigenvalue, "trace_per_param": s.trace / s.params} for s in stats])
        write_csv(st.plot("landscape.csv"), [{"block": n, "eps": float(e), "loss": float(v)} for n, (es, ls) in curves.items() for e, v in zip(es, ls)])
        write_csv(st.plot("comparison.csv"), rows)
        Path(HAWQ_ALLOCATION).parent.mkdir(exist_ok=True)  # read by the search stage (search.use_hawq)
        Path(HAWQ_ALLOCATION).write_text(json.dumps(hawq.allocation_file(plans, blocks, H.allocator), indent=2) + "\n")
        mlf.log_table({k: [r[k] for r in table] for k in table[0]}, artifact_file="table_vi.json")
        for f in report.iterdir():
            mlf.log_artifact(str(f))
    st.write_metrics({"split": "val", "claim": claim, "claim_holds_all": claim["holds_all"], "allocator": H.allocator,
                      "hessian_hvps": sum(s.hvps for s in stats), "hessian_seconds": sum(s.seconds for s in stats),
                      "finetune_cpu_seconds": round(sum(r.cpu_seconds for r in results), 1), "workers": H.workers,
                      "blocks": {s.name: {"lambda": s.eigenvalue, "trace": s.trace, "S": s.sensitivity, "hvps": s.hvps,
                                          "converged": s.converged} for s in stats}})
    print("hawq: claim " + ", ".join(f"{k}: {'holds' if v else 'does NOT hold'}" for k, v in claim["holds"].items()))


if __name__ == "__main__":
    main()
