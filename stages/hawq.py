"""hawq: Hessian-aware mixed precision (HAWQ) vs uniform precision within the same size budget.

Hessian of the baseline's loss on calibration batches (never test) -> per-block λ_i, Tr(H_i)
-> exact MILP bit allocation per budget -> Ω-ordered block-wise QAT (every seed) -> variants
(bit-packed deploy form + simulated form), Table VI, λ bar chart, 1-D landscapes, and the claim
"HAWQ >= the largest uniform precision that fits the same budget" (equal size at integer
budgets) on validation accuracy over ``hawq.seeds``
(test accuracy of every seed's variant comes from the evaluate stage: reports/variants.csv).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from compress.hessian import figures, hawq
from compress.train import evaluate_model, seed_everything
from compress.quant.export import write_quant_variant
from stages.common import Stage, write_csv
from stages.pipeline import HAWQ_ALLOCATION, reports



def main() -> None:
    st = Stage("hawq", __doc__)
    P, H, meta = st.P, st.P.hawq, st.meta
    model, spec = st.baseline()
    try:  # everything that needs the model is checked before any work
        blocks = hawq.resolve_blocks(model, H.blocks)
    except ValueError as e:
        st.die(f"{st.args.params}: {e}")
    calib, train, val = st.split("calib", "train", "val")
    need = H.hessian.batches * H.hessian.batch_size
    if need > len(calib[1]):
        st.die(f"{st.args.params}: hawq.hessian.batches x batch_size = {need} exceeds the {len(calib[1])} calibration images (data.calib_size)")
    seed_everything(P.seed)
    if H.threads is not None:
        torch.set_num_threads(H.threads)
    hb = [(calib[0][i : i + H.hessian.batch_size], calib[1][i : i + H.hessian.batch_size]) for i in range(0, need, H.hessian.batch_size)]

    REPORT = Path(reports("hawq"))
    with st.run() as mlf:
        # 1. spectra per block
        stats = hawq.block_spectra(model, blocks, hb, H.hessian.tol, H.hessian.max_iters, H.hessian.samples, seed=P.seed,
                                   progress=lambda s: print(f"hawq: {s.name}: λ={s.eigenvalue:.4g} Tr={s.trace:.4g}±{s.trace_stderr:.2g} "
                                                            f"({s.hvps} HVPs, {s.seconds:.1f}s{'' if s.converged else ', NOT converged'})"))
        # 2. exact allocations per budget, plus the uniform baselines
        sizes = [s.params for s in stats]
        errors = hawq.error_table(model, blocks, H.bit_candidates)
        w = hawq.block_weights(stats, H.objective)
        allocs = {f"hawq-mixed-b{B:g}": ("hawq", hawq.allocate_bits(w, errors, sizes, H.bit_candidates, B)) for B in H.budgets_avg_bits}
        allocs.update({f"hawq-uniform-w{b}": ("uniform", hawq.uniform_allocation(w, errors, sizes, H.bit_candidates, b)) for b in H.uniform_bits})
        ranges = None
        if H.act_bits is not None:
            from compress.quant.observers import calibrate

            ranges = calibrate(model, calib[0], [H.observer], bits=H.act_bits)[H.observer]
        # 3. quantize, fine-tune block-wise in Ω order, write variants (every seed)
        from compress.quant.fakequant import quantize_model

        results, ft_rows, done = [], [], {}
        monitor = (val[0][:1000], val[1][:1000])  # per-stage progress only; final accuracies use the whole val split
        for name, (method, a) in allocs.items():
            order = hawq.finetune_order(model, blocks, stats, a.bits)
            ptq_acc = None
            for seed in H.seeds:
                key = (tuple(a.bits), seed)
                if key in done:  # same bits and seed as an earlier allocation: identical (deterministic) result
                    q, ptq_acc, rows, vloss, vacc = done[key]
                else:
                    q = quantize_model(model, hawq.layer_bits(blocks, a.bits), H.act_bits, ranges)
                    if ptq_acc is None:
                        _, ptq_acc = evaluate_model(q, *val)
                    rows = hawq.blockwise_finetune(q, blocks, [n for n, _ in order], train, monitor, H.finetune, seed)
                    vloss, vacc = evaluate_model(q, *val)
                    done[key] = (q, ptq_acc, rows, vloss, vacc)
                vname = f"{name}-a{H.act_bits or 'fp'}-s{seed}"
                size = write_quant_variant(st.variants / vname, q, vname, "hawq", f"hawq-{method}", spec, meta["dataset"], seed,
                                           a.avg_bits, H.act_bits, notes=f"{method} allocation {dict(zip([b.name for b in blocks], a.bits))}; "
                                           f"Ω-order block-wise QAT {[n for n, _ in order]}")
                results.append({"variant": vname, "method": method, "budget": a.budget_avg_bits, "avg_bits": a.avg_bits,
                                "seed": seed, "objective": a.objective, "ptq_val_acc": ptq_acc, "val_acc": vacc, "val_loss": vloss,
                                "deploy_bytes": size, "bits": " ".join(map(str, a.bits))})
                ft_rows += [{"variant": vname, **{("monitor_" + k if k.startswith("val_") else k): v for k, v in r.items()}} for r in rows]
                mlf.log_metrics({f"val_acc.{vname}": vacc, f"ptq_val_acc.{vname}": ptq_acc})
                print(f"hawq: {vname}: bits {a.bits} avg {a.avg_bits:.3f}: val acc PTQ {ptq_acc:.4f} -> QAT {vacc:.4f}")
        # 4. the claim: at each size budget B, HAWQ >= the largest uniform precision that fits in B
        #    (same size when B is an integer), mean over seeds, validation split
        claim = []
        for B in H.budgets_avg_bits:
            fits = [b for b in H.uniform_bits if b <= B]
            if not fits:
                continue
            ub = max(fits)
            h = [r for r in results if r["method"] == "hawq" and r["budget"] == B]
            u = [r for r in results if r["method"] == "uniform" and r["budget"] == ub]
            hv, uv = [r["val_acc"] for r in h], [r["val_acc"] for r in u]
            claim.append({"budget_avg_bits": B, "hawq_avg_bits": h[0]["avg_bits"], "uniform_bits": ub,
                          "same_allocation": h[0]["bits"] == u[0]["bits"],
                          "hawq_mean": float(np.mean(hv)), "uniform_mean": float(np.mean(uv)),
                          "hawq_std": float(np.std(hv)), "uniform_std": float(np.std(uv)),
                          "seed_wins": int(sum(x >= y for x, y in zip(hv, uv))), "seeds": len(hv),
                          "holds": bool(np.mean(hv) >= np.mean(uv))})
        # 5. report: Table VI (first budget's bits per block and every budget), λ chart, landscapes
        REPORT.mkdir(parents=True, exist_ok=True)
        table = hawq.table_vi(stats, allocs[next(iter(allocs))][1].bits, H.act_bits)
        for name, (method, a) in allocs.items():
            if method == "hawq":
                for row, b in zip(table, a.bits):
                    row[f"bits@{a.budget_avg_bits:g}"] = b
        for row in table:
            del row["weight_bits"]
        write_csv(REPORT / "table_vi.csv", table)
        md = ["# HAWQ on " + meta["dataset"], "", f"Sensitivity order S=λ/n (most bits first): {hawq.relative_precision_order(stats)}", "",
              hawq.markdown_table(table), "## HAWQ vs the largest uniform precision within the same size budget (validation accuracy, mean over seeds)", "", hawq.markdown_table(claim),
              "Test accuracy of every variant (all seeds): reports/variants.csv (evaluate stage).", ""]
        (REPORT / "table_vi.md").write_text("\n".join(md))
        write_csv(st.plot("eigenvalues.csv"), [{"block": s.name, "lambda": s.eigenvalue, "trace_per_param": s.trace / s.params} for s in stats])
        figures.eigen_bar([s.name for s in stats], [s.eigenvalue for s in stats], [s.trace / s.params for s in stats], REPORT / "eigenvalues.png")
        curves = {b.name: hawq.loss_landscape(model, b, s.eigvec, hb, H.landscape_radius, H.landscape_points) for b, s in zip(blocks, stats)}
        write_csv(st.plot("landscape.csv"), [{"block": n, "eps": float(e), "loss": float(v)} for n, (es, ls) in curves.items() for e, v in zip(es, ls)])
        figures.landscapes(curves, {s.name: s.eigenvalue for s in stats}, REPORT / "landscape.png")
        write_csv(st.plot("comparison.csv"), results)
        write_csv(REPORT / "finetune.csv", ft_rows)
        figures.hawq_vs_uniform(results, REPORT / "hawq_vs_uniform.png")
        Path(HAWQ_ALLOCATION).parent.mkdir(exist_ok=True)  # read by the search stage (search.use_hawq)
        Path(HAWQ_ALLOCATION).write_text(json.dumps({"allocations": [
            {"name": n, "budget": a.budget_avg_bits, "avg_bits": a.avg_bits, "weight_bits": hawq.layer_bits(blocks, a.bits)}
            for n, (m, a) in allocs.items() if m == "hawq"]}, indent=2) + "\n")
        summary = {"split": "val",
                   "claim": claim, "claim_holds_all": all(c["holds"] for c in claim),
                   "hessian_hvps": sum(s.hvps for s in stats), "hessian_seconds": sum(s.seconds for s in stats),
                   "blocks": {s.name: {"lambda": s.eigenvalue, "trace": s.trace, "hvps": s.hvps, "seconds": s.seconds,
                                       "converged": s.converged} for s in stats}}
        mlf.log_metrics({"hessian_hvps": summary["hessian_hvps"], "hessian_seconds": summary["hessian_seconds"]})
        mlf.log_table({k: [r[k] for r in table] for k in table[0]}, artifact_file="table_vi.json")
        for f in REPORT.iterdir():
            mlf.log_artifact(str(f))
    st.write_metrics(summary)
    for c in claim:
        print(f"hawq: budget {c['budget_avg_bits']:g} bits: HAWQ ({c['hawq_avg_bits']:.3f} bits) {c['hawq_mean']:.4f} vs uniform "
              f"{c['uniform_bits']} bits {c['uniform_mean']:.4f} "
              f"({c['seed_wins']}/{c['seeds']} seeds) -> {'holds' if c['holds'] else 'DOES NOT hold'}")


if __name__ == "__main__":
    main()
