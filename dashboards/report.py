"""The exercise report, generated from this run's files: ``reports/report.md``.

Everything it states is computed from the variants table (``reports/variants.csv``), the
metrics files, the search trials and the Pareto table; sections for methods whose variants
are absent are left out, so the report stays true as stages are added or removed.

    python -m dashboards.report [--params params.yaml]
"""
from __future__ import annotations

import argparse
import datetime as dt
import glob
import json
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd

# runtime families, recognised from the runtime description the evaluate stage records
INT_KERNELS = ("qdq", "qgemm", "qlinear", "x86inductorquantizer", "pt2e", "qoperator")
DECODED = ("decoded", "dequantiz", "unpacked", "upcast", "fake-quant", "fake quant", "simulation")


def _pp(x: float) -> str:
    return "n/a" if x is None or pd.isna(x) else f"{x * 100:+.2f} pp"


def _pct(x: float) -> str:
    return "n/a" if x is None or pd.isna(x) else f"{x * 100:.2f}%"


def _bytes(x: float) -> str:
    if x is None or pd.isna(x):
        return "n/a"
    return f"{x / 1024:.1f} KiB" if x < 1024**2 else f"{x / 1024**2:.2f} MiB"


def _ms(x: float) -> str:
    return "n/a" if x is None or pd.isna(x) else (f"{x:.3f}" if x < 10 else f"{x:.1f}")


def _md_table(df: pd.DataFrame) -> str:
    if df.empty:
        return "_(none)_\n"
    cols = list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for _, r in df.iterrows():
        lines.append("| " + " | ".join(str(r[c]).replace("|", "/") for c in cols) + " |")
    return "\n".join(lines) + "\n"


def runtime_family(desc: str) -> str:
    d = str(desc).lower()
    if "monarch" in d:
        return "structured (Monarch) kernels"
    if "int8" in d and any(k in d for k in INT_KERNELS):
        return "integer kernels"
    if any(k in d for k in DECODED):
        return "decoded to fp32 at load"
    if "onnx runtime" in d or "onnxruntime" in d:
        return "fp32 ONNX Runtime"
    if "compile" in d or "inductor" in d:
        return "fp32 compiled"
    return "fp32 eager"


BASELINE_METHODS = ("baseline", "fp32-mlp")  # fp32 references: the train stage's, monarch's dense MLP, BinaryConnect's MLP


def _eager_baselines(v: pd.DataFrame) -> pd.DataFrame:
    return v[v["method"].isin(BASELINE_METHODS) & ~v["runtime"].astype(str).str.contains("compile", case=False)]


def pick_baseline(v: pd.DataFrame) -> pd.Series | None:
    """The pipeline's fp32 baseline: the train stage's eager one when present."""
    cand = _eager_baselines(v)
    if "stage" in v and (cand["stage"] == "train").any():
        cand = cand[cand["stage"] == "train"]
    if cand.empty:
        cand = v[v["method"] == "baseline"]
    if cand.empty:
        cand = v[(v["avg_weight_bits"] >= 32) & (v["sparsity"].fillna(0) < 0.01)]
    return None if cand.empty else cand.iloc[0]


def enrich(v: pd.DataFrame, base: pd.Series | None) -> pd.DataFrame:
    """Δ accuracy, size ratio and speed-ups of each variant against ITS fp32 reference: an fp32
    baseline written by the same stage (monarch's dense MLP, BinaryConnect's fp32 MLP), else the
    pipeline baseline when the variant is of the same model, else none (n/a)."""
    v = v.copy()
    if base is None:
        return v
    refs = _eager_baselines(v)
    cols = ["accuracy", "size_bytes", "latency_ms_b1", "latency_ms_b256"]
    ref = pd.DataFrame(np.nan, index=v.index, columns=cols)
    for i, row in v.iterrows():
        own = refs[refs["stage"] == row["stage"]] if "stage" in v else refs.iloc[0:0]
        if not own.empty:
            ref.loc[i] = own.iloc[0][cols].astype(float).values
        elif row.get("model") == base.get("model"):
            ref.loc[i] = base[cols].astype(float).values
    v["baseline_ref"] = ref["accuracy"]
    v["d_acc"] = v["accuracy"] - ref["accuracy"]
    v["d_acc_sim"] = v["accuracy_sim"] - ref["accuracy"]
    v["size_ratio"] = ref["size_bytes"] / v["size_bytes"]
    v["speedup_b1"] = ref["latency_ms_b1"] / v["latency_ms_b1"]
    v["speedup_b256"] = ref["latency_ms_b256"] / v["latency_ms_b256"]
    v["family"] = v["runtime"].map(runtime_family)
    return v


def method_table(v: pd.DataFrame) -> pd.DataFrame:
    out = pd.DataFrame({
        "variant": v["variant"],
        "W/A bits": [f"{w:g}/{'fp' if pd.isna(a) else f'{a:g}'}" for w, a in zip(v["avg_weight_bits"], v["act_bits"])],
        "sparsity": v["sparsity"].map(lambda s: f"{s:.2f}"),
        "accuracy": v["accuracy"].map(_pct),
        "acc (sim)": v["accuracy_sim"].map(_pct),
        "Δ vs its fp32": v.get("d_acc", pd.Series(np.nan, index=v.index)).map(_pp),
        "size": v["size_bytes"].map(_bytes),
        "× smaller": v.get("size_ratio", pd.Series(np.nan, index=v.index)).map(lambda r: "n/a" if pd.isna(r) else f"{r:.1f}×"),
        "ms b1": v["latency_ms_b1"].map(_ms),
        "ms b256": v["latency_ms_b256"].map(_ms),
        "speed-up b1/b256": [("n/a" if pd.isna(a) else f"{a:.2f}×/{b:.2f}×") for a, b in
                             zip(v.get("speedup_b1", pd.Series(np.nan, index=v.index)), v.get("speedup_b256", pd.Series(np.nan, index=v.index)))],
        "runtime": v["runtime"],
    })
    return out


def _dataset_banner(v: pd.DataFrame, metrics: dict[str, dict]) -> list[str]:
    metrics = {k: m for k, m in metrics.items() if isinstance(m, dict)}
    used = sorted(set(v["dataset"].astype(str))) if len(v) else sorted({m.get("dataset") for m in metrics.values() if m.get("dataset")})
    subst = {k: m for k, m in metrics.items() if m.get("dataset_substituted")}
    prep = metrics.get("prepare", {})
    lines = [f"**Dataset actually used: {', '.join(used) or 'unknown'}**"
             + (f" (requested: {prep.get('requested')})" if prep.get("requested") else "") + "."]
    if subst or prep.get("substituted"):
        reason = prep.get("substitution_reason") or next((m.get("substitution_reason") for m in subst.values() if m.get("substitution_reason")), "")
        lines.insert(0, "")
        lines.insert(0, f"> ⚠️ **DATASET SUBSTITUTED.** The requested dataset was unavailable, so every number below was "
                        f"measured on **{', '.join(used)}**, not on the requested one. {('Reason: ' + reason) if reason else ''}")
    return lines


def _ptq_qat_answers(v: pd.DataFrame, base: pd.Series | None) -> list[str]:
    out = []
    for stage, label in (("ptq", "PTQ"), ("qat", "QAT")):
        s = v[v["stage"] == stage]
        if s.empty or base is None:
            continue
        best, worst = s.loc[s["accuracy"].idxmax()], s.loc[s["accuracy"].idxmin()]
        if len(s) == 1:
            out.append(f"- **{label}** (1 variant, `{best['variant']}`): test accuracy {_pct(base['accuracy'])} (fp32) → "
                       f"{_pct(best['accuracy'])} ({_pp(best['d_acc'])}).")
            continue
        out.append(f"- **{label}** ({len(s)} variants): test accuracy goes from {_pct(base['accuracy'])} (fp32) to between "
                   f"{_pct(worst['accuracy'])} (`{worst['variant']}`, {_pp(worst['d_acc'])}) and {_pct(best['accuracy'])} "
                   f"(`{best['variant']}`, {_pp(best['d_acc'])}).")
    ptq, qat = v[v["stage"] == "ptq"], v[v["stage"] == "qat"]
    if len(ptq) and len(qat):
        pairs = []
        for _, q in qat.iterrows():
            m = ptq[(ptq["avg_weight_bits"] == q["avg_weight_bits"]) & (ptq["act_bits"].fillna(-1) == (q["act_bits"] if not pd.isna(q["act_bits"]) else -1))]
            if len(m):
                p = m.loc[m["accuracy"].idxmax()]
                abits = "fp" if pd.isna(q["act_bits"]) else f"{q['act_bits']:g}"
                pairs.append(f"W{q['avg_weight_bits']:g}A{abits}: "
                             f"QAT {_pct(q['accuracy'])} vs best PTQ {_pct(p['accuracy'])} ({_pp(q['accuracy'] - p['accuracy'])})")
        if pairs:
            out.append("- **QAT vs PTQ at the same bit widths**: " + "; ".join(pairs) + ".")
    return out


def latency_section(v: pd.DataFrame, base: pd.Series | None) -> list[str]:
    if base is None or "speedup_b1" not in v:
        return []
    threads = sorted(set(v["threads"].dropna().astype(int))) if "threads" in v else []
    lines = ["## Does inference time decrease, and why?", "",
             f"Latency is the median wall-clock time of one call after warm-up, measured by the evaluate stage on the CPU "
             f"with {', '.join(map(str, threads)) or '?'} thread(s), at batch 1 and batch 256; the fp32 eager baseline takes "
             f"{_ms(base['latency_ms_b1'])} ms and {_ms(base['latency_ms_b256'])} ms. Speed-up = baseline time / variant time.", ""]
    g = v[v["variant"] != base["variant"]].groupby("family")
    summary = g.agg(variants=("variant", "count"), speedup_b1=("speedup_b1", "median"), speedup_b256=("speedup_b256", "median"),
                    best_b256=("speedup_b256", "max")).reset_index()
    summary[["speedup_b1", "speedup_b256", "best_b256"]] = summary[["speedup_b1", "speedup_b256", "best_b256"]].map(lambda x: f"{x:.2f}×")
    lines += [_md_table(summary.rename(columns={"family": "runtime family", "speedup_b1": "median speed-up b1",
                                                "speedup_b256": "median speed-up b256", "best_b256": "best b256"})), ""]
    fam = {f: s for f, s in g}
    why = []
    def verdict(x: float) -> str:
        return "faster" if x > 1.1 else ("slower" if x < 0.9 else "about as fast (within noise)")

    if "integer kernels" in fam:
        s = fam["integer kernels"]
        b = s.loc[s["speedup_b256"].idxmax()]
        text = (f"- **Integer kernels** (`{b['variant']}`, {b['runtime']}): {b['speedup_b1']:.2f}× at batch 1 "
                f"({verdict(b['speedup_b1'])}), {b['speedup_b256']:.2f}× at batch 256 ({verdict(b['speedup_b256'])}) vs "
                f"fp32 PyTorch eager. int8 GEMM/conv kernels (VNNI dot products in oneDNN / MLAS) do 4× more "
                f"multiply-accumulates per instruction than fp32 and read 4× fewer weight bytes, but every quantized "
                f"operator also (de)quantizes its activations. ")
        ort32 = fam.get("fp32 ONNX Runtime")
        if ort32 is not None and "onnx" in str(b["runtime"]).lower():
            r = ort32.iloc[0]
            text += (f"Against the same runtime in fp32 (`{r['variant']}`), int8 is {r['latency_ms_b1'] / b['latency_ms_b1']:.2f}× "
                     f"at batch 1 and {r['latency_ms_b256'] / b['latency_ms_b256']:.2f}× at batch 256 — that ratio isolates "
                     f"the effect of the integer kernels from the runtime's lower per-operator overhead. ")
        elif b["speedup_b1"] > 1.1:
            text += ("Part of the batch-1 gain is the runtime's lower per-operator overhead compared with PyTorch eager "
                     "(there is no fp32 variant on the same runtime in this run to separate the two). ")
        text += ("At batch 256 the arithmetic dominates; " + (
            "the integer kernels win there." if b["speedup_b256"] > 1.1 else
            f"for this small network the int8 convolutions are too small to amortise the extra quantize/dequantize "
            f"work and layout conversions, so there is no gain (measured with {', '.join(map(str, threads)) or '?'} thread(s)); "
            f"wider layers (the 1024-wide MLPs) or more threads are where int8 pays off."))
        why.append(text)
    if "decoded to fp32 at load" in fam:
        s = fam["decoded to fp32 at load"]
        med1, med256 = s["speedup_b1"].median(), s["speedup_b256"].median()
        why.append(f"- **Artifacts decoded to fp32 at load** ({len(s)} variants: packed sub-8-bit codes, sparse files, "
                   f"upcast low-precision floats): median {med1:.2f}× at batch 1 and {med256:.2f}× at batch 256 — "
                   + ("no gain. " if med256 >= 0.9 else "even slower. ")
                   + "The file is smaller, but it is expanded to dense fp32 weights before running, so the same fp32 "
                     "kernels do the same arithmetic and move the same bytes"
                   + ("; where the runtime also fake-quantizes each layer's input (the sub-8-bit PTQ/QAT forms), those "
                      "extra element-wise operations make it slower, most visibly at batch 1 where per-operator overhead "
                      "dominates. " if min(med1, med256) < 0.9 else ". ")
                   + "Sub-8-bit and unstructured-sparse speed-ups need kernels this CPU stack does not have.")
    if "fp32 compiled" in fam:
        s = fam["fp32 compiled"]
        c1, c256 = s["speedup_b1"].median(), s["speedup_b256"].median()
        why.append(f"- **torch.compile (fp32)**: {c1:.2f}× at batch 1 ({verdict(c1)}) and {c256:.2f}× at batch 256 "
                   f"({verdict(c256)}) — the same fp32 arithmetic; inductor fuses the element-wise operations (bias, ReLU, "
                   f"pooling) into fewer kernels, which saves intermediate memory traffic"
                   + (" and per-operator overhead." if c1 > 1.1 else
                      "; at batch 1 the compiled graph's guards and call wrapper cost about as much as the dispatch they save."))
    if "fp32 ONNX Runtime" in fam:
        s = fam["fp32 ONNX Runtime"]
        why.append(f"- **ONNX Runtime fp32**: median {s['speedup_b1'].median():.2f}× at batch 1 and "
                   f"{s['speedup_b256'].median():.2f}× at batch 256 — same precision, but a graph-optimised, fused "
                   f"execution with less per-operator overhead than PyTorch eager; it is the fair reference for its int8 "
                   f"counterpart.")
    if "structured (Monarch) kernels" in fam:
        s = fam["structured (Monarch) kernels"]
        why.append(f"- **Structured (Monarch) layers**: median {s['speedup_b256'].median():.2f}× at batch 256 and "
                   f"{s['speedup_b1'].median():.2f}× at batch 1 — fewer FLOPs (two block-diagonal batched matmuls instead of a "
                   f"dense one) pay off only when the layers are large enough for arithmetic to dominate.")
    if "fp32 eager" in fam:
        s = fam["fp32 eager"]
        why.append(f"- **Other fp32 eager variants** ({len(s)}): median {s['speedup_b256'].median():.2f}× at batch 256; a "
                   f"smaller dense model (structured pruning) is faster only in proportion to the work removed.")
    lines += why + ["", f"Threads: all variants were timed with the same thread count ({', '.join(map(str, threads)) or '?'}); "
                        "on a 2-core machine shared with other jobs the timings carry noise of several percent, so speed-ups "
                        "within ±10% are not meaningful.", ""]
    return lines


def size_section(v: pd.DataFrame, base: pd.Series | None) -> list[str]:
    if base is None:
        return []
    s = v.sort_values("size_bytes")
    ideal = s["params"] * s["avg_weight_bits"] / 8
    t = pd.DataFrame({"variant": s["variant"], "method": s["method"], "avg weight bits": s["avg_weight_bits"].map(lambda x: f"{x:g}"),
                      "stored params": s["params"].map(lambda x: f"{int(x):,}"), "bytes on disk": s["size_bytes"].map(lambda x: f"{int(x):,}"),
                      "× smaller than fp32": s["size_ratio"].map(lambda r: f"{r:.1f}×"),
                      "overhead vs params·bits/8": ((s["size_bytes"] / ideal - 1) * 100).map(lambda x: "n/a" if pd.isna(x) or np.isinf(x) else f"{x:+.0f}%")})
    small = s.iloc[0]
    return ["## How much does model size drop?", "",
            f"Sizes are the bytes of each variant's deployed files on disk (they load back and give the reported accuracy). "
            f"The fp32 baseline is {int(base['size_bytes']):,} bytes; the smallest variant, `{small['variant']}`, is "
            f"{int(small['size_bytes']):,} bytes ({base['size_bytes'] / small['size_bytes']:.1f}× smaller) at "
            f"{_pct(small['accuracy'])} test accuracy ({_pp(small['accuracy'] - base['accuracy'])}). The last column compares "
            f"the file with the ideal `params × bits / 8`: scales, zero points, indices/bitmasks and file headers are the overhead.",
            "", _md_table(t), ""]


def search_section(trials: pd.DataFrame, search_metrics: dict, figs: dict[str, str]) -> list[str]:
    if trials.empty:
        return []
    lines = ["## Searches (Optuna, multi-objective)", "",
             f"Sampler: {search_metrics.get('sampler', '?')}. Each trial is scored on the **validation** split "
             f"(the test split is reserved for the evaluate stage); objectives: accuracy (max) and artifact bytes (min). "
             f"Uniform allocations{' and HAWQ' if trials['start'].astype(str).str.contains('hawq').any() else ''} were enqueued "
             f"first as reference points.", ""]
    for kind, s in search_metrics.get("studies", {}).items():
        dom = s.get("starts_dominated_by_search", {})
        n_dom = sum(dom.values())
        lines.append(f"- **{kind}** (`{s['study']}`): {s['n_complete']} trials, {s['front_size']} on the front; best "
                     f"validation accuracy {_pct(s['best_accuracy'])}, smallest artifact {_bytes(s['smallest_bytes'])}. "
                     f"{n_dom} of {len(dom)} starting points are dominated by a searched trial"
                     + (f" ({', '.join(k for k, d in dom.items() if d)})." if n_dom else "."))
    exported = search_metrics.get("exported_variants", [])
    if exported:
        lines.append(f"- Exported as variants and measured on the test split: {', '.join(f'`{e}`' for e in exported)}.")
    lines.append("")
    if "bits_heatmap" in figs:
        lines += [f"![weight bits per layer]({figs['bits_heatmap']})", ""]
    return lines


def build_report(variants: pd.DataFrame, trials: pd.DataFrame, pareto: pd.DataFrame, metrics: dict[str, dict],
                 figures: dict[str, str], other_plots: list[str], commit: str = "",
                 replicates: list[dict] | None = None) -> str:
    """Markdown text of the report; ``figures``/``other_plots`` are paths relative to the report."""
    v = variants.copy()
    base = pick_baseline(v) if len(v) else None
    v = enrich(v, base)
    L = ["# Compression report", ""]
    L += _dataset_banner(v, metrics) + [""]
    model = ", ".join(sorted(set(v["model"].astype(str)))) if len(v) else "?"
    L += [f"Model: {model}. Variants: {len(v)}; search trials: {len(trials)}. Generated "
          f"{dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}{f' at commit {commit}' if commit else ''} "
          f"by `dvc repro` (stage `report`) from `reports/variants.csv`, `metrics/*.json` and the search trials.", ""]
    if base is not None:
        L += ["## Answers in brief", "",
              f"- **Baseline** `{base['variant']}`: test accuracy {_pct(base['accuracy'])}, {int(base['size_bytes']):,} bytes, "
              f"{_ms(base['latency_ms_b1'])} ms at batch 1 and {_ms(base['latency_ms_b256'])} ms at batch 256 ({base['runtime']})."]
        L += _ptq_qat_answers(v, base)
        others = v[v["variant"] != base["variant"]]
        if len(others):
            f1, f256 = others.loc[others["speedup_b1"].idxmax()], others.loc[others["speedup_b256"].idxmax()]
            L += [f"- **Inference time**: the fastest variant at batch 256 is `{f256['variant']}` ({f256['speedup_b256']:.2f}× vs "
                  f"its fp32 reference, {f256['runtime']}); at batch 1 `{f1['variant']}` ({f1['speedup_b1']:.2f}×). Variants whose "
                  f"artifact is decoded to fp32 at load do not get faster (see below)."]
            same = others[others["model"] == base["model"]]
            if len(same):
                sm = same.loc[same["size_bytes"].idxmin()]
                good = same[same["accuracy"] >= base["accuracy"] - 0.01]
                text = (f"- **Size** ({base['model']}): the smallest artifact is `{sm['variant']}`, {int(sm['size_bytes']):,} bytes "
                        f"({base['size_bytes'] / sm['size_bytes']:.1f}× smaller than fp32) at {_pct(sm['accuracy'])}")
                if len(good):
                    sg = good.loc[good["size_bytes"].idxmin()]
                    text += (f"; the smallest within 1 pp of the baseline's accuracy is `{sg['variant']}`, "
                             f"{int(sg['size_bytes']):,} bytes ({base['size_bytes'] / sg['size_bytes']:.1f}× smaller) at {_pct(sg['accuracy'])}")
                L.append(text + ".")
        L.append("")
    # per-stage sections, in the order stages appear; train (baseline) first
    order = {"train": 0, "ptq": 1, "qat": 2, "search": 99}
    for stage in sorted(dict.fromkeys(v["stage"]), key=lambda st: (order.get(st, 50), st)):
        s = v[v["stage"] == stage].sort_values(["avg_weight_bits", "variant"], ascending=[False, True])
        title = {"train": "Baseline (fp32)", "ptq": "Post-training quantization (PTQ)", "qat": "Quantization-aware training (QAT)",
                 "search": "Search results exported as variants"}.get(stage, f"Stage `{stage}`")
        L += [f"## {title}", "", f"Methods: {', '.join(sorted(set(s['method'].astype(str))))}.", "", _md_table(method_table(s))]
        notes = s[s["notes"].notna() & (s["notes"].astype(str) != "")]
        if len(notes):
            L += ["Notes: " + " ".join(f"`{r['variant']}`: {r['notes']}" for _, r in notes.head(12).iterrows()), ""]
        gap = s[(s["accuracy_sim"].notna()) & ((s["accuracy"] - s["accuracy_sim"]).abs() > 0.001)]
        if len(gap):
            L += ["Deployed vs simulated accuracy differ by more than 0.1 pp for: "
                  + ", ".join(f"`{r['variant']}` ({_pp(r['accuracy'] - r['accuracy_sim'])})" for _, r in gap.iterrows())
                  + (". Where the deployed runtime uses integer kernels, they round differently from the float "
                     "simulation (requantized intermediate results, integer accumulation, fused bias/ReLU); the variant "
                     "notes above give each stage's own explanation." if (gap["family"] == "integer kernels").any()
                     else ". The variant notes above give the stage's explanation."), ""]
    L += latency_section(v, base)
    L += size_section(v, base)
    L += search_section(trials, metrics.get("search", {}), figures)
    if len(pareto):
        L += ["## Pareto fronts (all variants + all search trials)", "",
              "A point is on a front when no other point is at least as accurate *and* at least as small/fast, and better in one. "
              "Variants are scored on the test split, search trials on the validation split (`accuracy_split` in "
              "`reports/pareto.csv`).", ""]
        for key in ("acc_vs_size", "acc_vs_latency"):
            if key in figures:
                L += [f"![{key}]({figures[key]})", ""]
        front = pareto[pareto["front_3way"].astype(bool)].sort_values("size_bytes")
        ft = pd.DataFrame({"name": front["name"], "source": front["source"], "method": front["method"],
                           "accuracy": front["accuracy"].map(_pct), "split": front["accuracy_split"],
                           "size": front["size_bytes"].map(_bytes), "ms b1": front["latency_ms_b1"].map(_ms),
                           "on acc×size front": front["front_acc_size"].map(lambda b: "yes" if b else "")})
        L += ["3-way front (accuracy × size × latency at batch 1):", "", _md_table(ft), ""]
    if replicates:
        L += ["## Replicates (mean ± CI over seeds)", "", _md_table(pd.DataFrame(replicates)), ""]
    if other_plots:
        L += ["## Figures from the method stages", ""]
        for p in other_plots:
            L += [f"### {Path(p).parent.name}/{Path(p).stem}", "", f"![{Path(p).stem}]({p})", ""]
    L += ["## Caveats", "",
          "- Latencies come from a shared 2-core CPU; repeat `dvc repro evaluate report` on an idle machine for firmer numbers.",
          "- Search trials use PTQ/pruning without fine-tuning and validation accuracy; only the exported front trials "
          "were measured on the test split.", ""]
    return "\n".join(L)


def collect_metrics(folder: str | Path = "metrics") -> dict[str, dict]:
    out = {}
    for p in sorted(Path(folder).glob("*.json")):
        try:
            out[p.stem] = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError):
            continue
    return out


def find_plots(globs: list[str], exclude: Path) -> list[Path]:
    found = []
    for g in globs:
        for p in sorted(glob.glob(g, recursive=True)):
            path = Path(p)
            if path.suffix.lower() == ".png" and exclude.resolve() not in path.resolve().parents and path not in found:
                found.append(path)
    return found


def generate(cfg, commit: str = "", metrics_dir: str = "metrics", *, variants: str | None = None, trials: str | None = None,
             pareto: str | None = None, figures: str | None = None, out: str | None = None) -> Path:
    """Pareto table + figures + report: ``cfg`` is the params section ``report``; the paths default to the pipeline's
    (stages/pipeline.py): the variants table and search trials read, the Pareto table, figures and report written."""
    from dashboards.figures import all_figures
    from dashboards.pareto import build, points_from_files, replicate_groups
    from stages import pipeline

    variants, trials = variants or pipeline.VARIANTS_CSV, trials or pipeline.SEARCH_TRIALS
    pareto, figures, out = pareto or pipeline.PARETO_CSV, figures or pipeline.FIGURES, out or pipeline.REPORT_MD

    variants_path, trials_path = variants, trials
    if not Path(variants_path).exists():
        raise FileNotFoundError(f"{variants_path} missing: run the evaluate stage first (dvc repro evaluate)")
    variants = pd.read_csv(variants_path)
    has_trials = Path(trials_path).exists()
    trials = pd.read_csv(trials_path) if has_trials else pd.DataFrame(columns=["start"])
    if "start" in trials:
        trials["start"] = trials["start"].fillna("")
    pts = build(points_from_files(variants_path, trials_path if has_trials else None), pareto)
    fig_dir = Path(figures)
    figs = all_figures(pts, fig_dir, cfg.heatmap_top) if len(pts) else []
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    rel = lambda p: os.path.relpath(p, out.parent)
    figures = {Path(f).stem: rel(f) for f in figs}
    others = [rel(p) for p in find_plots(cfg.plot_globs, fig_dir)]
    metrics = collect_metrics(metrics_dir)
    replicates = None
    reps = replicate_groups(pts[pts["source"] == "variant"], cfg.confidence) if len(pts) else pd.DataFrame()
    if len(reps) and (reps["n"] > 1).any():
        r = reps[reps["n"] > 1]
        replicates = [{"variant": x["base"], "method": x["method"], "runtime": x["runtime"], "seeds": int(x["n"]),
                                  "accuracy": f"{x['accuracy_mean'] * 100:.2f} ± {x['accuracy_ci'] * 100:.2f} %",
                                  "size_bytes": f"{x['size_bytes_mean']:.0f}",
                                  "ms b256": f"{x['latency_ms_b256_mean']:.3f} ± {x['latency_ms_b256_ci']:.3f}"} for _, x in r.iterrows()]
    out.write_text(build_report(variants, trials, pts, metrics, figures, others, commit, replicates))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dashboards.report", description=__doc__.split("\n\n")[0])
    ap.add_argument("--params", default="params.yaml")
    a = ap.parse_args(argv)
    from compress.config import ConfigError, load_params

    try:
        P = load_params(a.params)
        print(generate(P.report))
    except (ConfigError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
