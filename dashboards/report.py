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
import platform
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd


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


BASELINE_METHODS = ("baseline", "fp32-mlp")  # fp32 references: the train stage's, monarch's dense MLP, BinaryConnect's MLP
NOISE = 0.10  # speed-ups within ±10 % are not meaningful on a shared CPU; a run that measured more drift widens it


def run_noise(metrics: dict) -> dict[int, float]:
    """Per batch size, the band within which a speed-up is noise: ±10 %, or wider when the run measured its own
    reference drifting more (``best_fp32_spread_b<B>`` of ``metrics/latency.json`` references: p90 / p10 - 1 of
    one model's repeated timings on one engine)."""
    refs = (metrics.get("latency") or {}).get("references") or {}
    return {b: max([NOISE] + [float(r[f"best_fp32_spread_b{b}"]) for r in refs.values()
                              if r.get(f"best_fp32_spread_b{b}") is not None]) for b in BATCHES}
BATCHES = (1, 256)
INT8_ENGINES = ("pt2e", "pt2e-aoti")  # engines that only run int8 graphs
# Han, Mao & Dally, "Deep Compression", ICLR 2016, Table 1: published numbers, not measured here
DEEP_COMPRESSION = [
    {"model": "lenet300", "network": "LeNet-300-100", "fp32_kb": 1070, "compressed_kb": 27, "ratio": 40,
     "err_fp32_pct": 1.64, "err_pct": 1.58},
    {"model": "lenet5-caffe", "network": "LeNet-5 (Caffe: conv 20/50, fc 500)", "fp32_kb": 1720, "compressed_kb": 44, "ratio": 39,
     "err_fp32_pct": 0.80, "err_pct": 0.74},
]
DEEP_COMPRESSION_CITATION = ("S. Han, H. Mao, W. J. Dally, *Deep Compression: Compressing Deep Neural Networks with Pruning, "
                             "Trained Quantization and Huffman Coding*, ICLR 2016, Table 1")


def _x(x: float) -> str:
    return "n/a" if x is None or pd.isna(x) else f"{x:.2f}×"


def verdict(x: float, noise: float = NOISE) -> str:
    """Words for a speed-up ``x`` (reference time / variant time) that never claim more than it shows."""
    if x is None or pd.isna(x):
        return "n/a"
    if abs(x - 1) < 0.005:
        return "same time"
    if x > 1 + noise:
        return f"faster ({x:.2f}×)"
    if x > 1:
        return f"faster by {(x - 1) * 100:.0f}% (within the ±{noise * 100:.0f}% noise)"
    if x >= 1 / (1 + noise):
        return f"slower by {(1 - x) * 100:.0f}% (within the ±{noise * 100:.0f}% noise)"
    return f"slower ({x:.2f}×)"


def int8_ops(text) -> tuple[int, int] | None:
    """(int8 ops, compute ops) from the ``lowp_ops_b256`` column ("int8 5/5 compute ops (...)"), None when absent."""
    m = re.match(r"\s*int8 (\d+)/(\d+)", str(text)) if isinstance(text, str) else None
    return (int(m.group(1)), int(m.group(2))) if m else None


def number_format(row: pd.Series) -> str:
    """The variant's number format and structure, from manifest fields (method, bits, sparsity): the family
    its speed is discussed under."""
    m, wb, sp = str(row.get("method", "")), row.get("avg_weight_bits"), row.get("sparsity")
    wb = 32.0 if wb is None or pd.isna(wb) else float(wb)
    sp = 0.0 if sp is None or pd.isna(sp) else float(sp)
    if m in BASELINE_METHODS and wb >= 32 and sp < 0.01:
        return "fp32 reference"
    if "monarch" in m:
        return "structured (Monarch)"
    if m == "recipe":
        return "recipe (pruned + shared-weight codes)"
    if wb <= 1:
        return "binary (1-bit) weights"
    if "float" in m:
        return "low-precision float (fp16/bf16/fp8)"
    if wb <= 8:
        return "integer-grid weights (≤ 8 bit)"
    if sp >= 0.01:
        return "sparse fp32"
    return "dense fp32 (smaller or searched)"


def _eager_baselines(v: pd.DataFrame) -> pd.DataFrame:
    return v[v["method"].isin(BASELINE_METHODS)]


def pick_baseline(v: pd.DataFrame) -> pd.Series | None:
    """The pipeline's fp32 baseline: the train stage's when present."""
    cand = _eager_baselines(v)
    if "stage" in v and (cand["stage"] == "train").any():
        cand = cand[cand["stage"] == "train"]
    if cand.empty:
        cand = v[(v["avg_weight_bits"] >= 32) & (v["sparsity"].fillna(0) < 0.01)]
    return None if cand.empty else cand.iloc[0]


def measured(v: pd.DataFrame) -> pd.DataFrame:
    """Rows the evaluate stage measured (no ``error``, an accuracy)."""
    ok = v["accuracy"].notna()
    if "error" in v:
        ok &= v["error"].isna() | (v["error"].astype(str).str.strip() == "")
    return v[ok]


def enrich(v: pd.DataFrame, base: pd.Series | None) -> pd.DataFrame:
    """Δ accuracy and size ratio of each variant against ITS fp32 reference: an fp32 baseline written by the
    same stage (monarch's dense MLP, BinaryConnect's fp32 MLP), else the pipeline baseline when the variant
    is of the same model, else none (n/a); ``family``: :func:`number_format`.  Speed-ups are the evaluate
    stage's (``speedup_vs_eager_b*``, ``speedup_vs_best_fp32_b*``), measured against the fp32 reference of
    the same architecture."""
    v = v.copy()
    v["family"] = [number_format(r) for _, r in v.iterrows()] if len(v) else []
    if base is None:
        return v
    refs = _eager_baselines(v)
    cols = ["accuracy", "size_bytes"]
    ref = pd.DataFrame(np.nan, index=v.index, columns=cols)
    for i, row in v.iterrows():
        own = refs[refs["stage"] == row["stage"]] if "stage" in v else refs.iloc[0:0]
        if len(own) > 1 and "model" in v:  # several references in one stage (recipes): the same model's
            same = own[own["model"] == row.get("model")]
            own = same if not same.empty else own
        if not own.empty:
            ref.loc[i] = own.iloc[0][cols].astype(float).values
        elif row.get("model") == base.get("model"):
            ref.loc[i] = base[cols].astype(float).values
    v["baseline_ref"] = ref["accuracy"]
    v["d_acc"] = v["accuracy"] - ref["accuracy"]
    v["d_acc_sim"] = v["accuracy_sim"] - ref["accuracy"]
    v["size_ratio"] = ref["size_bytes"] / v["size_bytes"]
    return v


def method_table(v: pd.DataFrame) -> pd.DataFrame:
    col = lambda c: v[c] if c in v else pd.Series(np.nan, index=v.index)
    pair = lambda a, b: [("n/a" if pd.isna(x) and pd.isna(y) else f"{_x(x)}/{_x(y)}") for x, y in zip(col(a), col(b))]
    out = pd.DataFrame({
        "variant": v["variant"],
        "W/A bits": [f"{w:g}/{'fp' if pd.isna(a) else f'{a:g}'}" for w, a in zip(v["avg_weight_bits"], v["act_bits"])],
        "sparsity": v["sparsity"].map(lambda s: "n/a" if pd.isna(s) else f"{s:.2f}"),
        "accuracy": v["accuracy"].map(_pct),
        "acc (sim)": v["accuracy_sim"].map(_pct),
        "Δ vs its fp32": col("d_acc").map(_pp),
        "size": v["size_bytes"].map(_bytes),
        "× smaller": col("size_ratio").map(lambda r: "n/a" if pd.isna(r) else f"{r:.1f}×"),
        "ms b1 [engine]": [f"{_ms(t)} [{e}]" if isinstance(e, str) else _ms(t) for t, e in zip(v["latency_ms_b1"], col("fastest_b1"))],
        "ms b256 [engine]": [f"{_ms(t)} [{e}]" if isinstance(e, str) else _ms(t) for t, e in zip(v["latency_ms_b256"], col("fastest_b256"))],
        "vs fp32 eager b1/b256": pair("speedup_vs_eager_b1", "speedup_vs_eager_b256"),
        "vs best fp32 b1/b256": pair("speedup_vs_best_fp32_b1", "speedup_vs_best_fp32_b256"),
        "runtime (fastest at b256)": v["runtime"],
    })
    return out


def _arch_label(key: str) -> tuple[str, str]:
    """(model name, readable architecture) of a compress.deploy.measure.arch_key string."""
    try:
        name, kw = json.loads(key)[:2]
    except (ValueError, TypeError):
        return str(key), str(key)
    return name, name + (f" ({', '.join(f'{k}={v}' for k, v in kw.items())})" if kw else "")


def reference_table(v: pd.DataFrame, metrics: dict[str, dict]) -> pd.DataFrame:
    """One row per architecture: its fp32 reference, PyTorch eager and best fp32 latencies (with the engine) at
    each batch size, and how many variants were compared with it.  From ``metrics/latency.json``
    ``references``; without that file, recovered from the table (reference time = speed-up × variant time)."""
    refs = (metrics.get("latency") or {}).get("references") or {}
    rows = []
    for key, r in refs.items():
        name, arch = _arch_label(key)
        rows.append({"model": name, "architecture": arch, "reference": r.get("reference"), "timings": r.get("timings"),
                     **{f"{k}_b{b}": r.get(f"{k}_b{b}") for b in BATCHES for k in ("eager", "best_fp32", "best_fp32_runtime")}})
    if not rows and "reference" in v:
        for ref, g in v.dropna(subset=["reference"]).groupby("reference", sort=False):
            row = {"model": str(g["model"].iloc[0]), "architecture": str(g["model"].iloc[0]), "reference": ref, "timings": None}
            for b in BATCHES:
                row[f"eager_b{b}"] = float((g[f"speedup_vs_eager_b{b}"] * g[f"latency_ms_b{b}"]).median())
                row[f"best_fp32_b{b}"] = float((g[f"speedup_vs_best_fp32_b{b}"] * g[f"latency_ms_b{b}"]).median())
                row[f"best_fp32_runtime_b{b}"] = None
            rows.append(row)
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    df["variants"] = [int((v["reference"] == r["reference"]).sum()) if "reference" in v else 0 for _, r in df.iterrows()]
    return df


def speed_frame(v: pd.DataFrame, base: pd.Series | None) -> pd.DataFrame:
    """The measured variants with their speed-ups (``se<B>``: vs fp32 eager, ``sb<B>``: vs the best fp32
    deployment, per batch size B), reference times implied by them, ``compressed`` (not an fp32 reference)
    and ``int8`` (int8 compute ops on the fastest batch-256 engine).  A compressed variant that is its own
    reference (structured pruning: a smaller dense architecture) is compared with the pipeline baseline's
    reference instead, when it is of the same model (``vs_parent``)."""
    if not {f"speedup_vs_{t}_b{b}" for t in ("eager", "best_fp32") for b in BATCHES} <= set(v.columns):
        return v.iloc[0:0]  # a table from before the per-engine evaluate: no speed-ups to report
    s = measured(v).dropna(subset=["latency_ms_b1", "latency_ms_b256"], how="all").copy()
    if s.empty:
        return s
    for b in BATCHES:
        s[f"se{b}"] = s[f"speedup_vs_eager_b{b}"].astype(float)
        s[f"sb{b}"] = s[f"speedup_vs_best_fp32_b{b}"].astype(float)
    self_ref = s["variant"] == s["reference"]
    s["compressed"] = ~(s["family"] == "fp32 reference") & ~(self_ref & s["method"].isin(BASELINE_METHODS))
    s["vs_parent"] = False
    if base is not None and base["variant"] in set(s["variant"]):
        b0 = s[s["variant"] == base["variant"]].iloc[0]
        for i in s.index[self_ref & s["compressed"] & (s["model"] == base["model"]) & (s["variant"] != base["variant"])]:
            for b in BATCHES:
                ms = s.at[i, f"latency_ms_b{b}"]
                s.at[i, f"se{b}"] = b0[f"se{b}"] * b0[f"latency_ms_b{b}"] / ms
                s.at[i, f"sb{b}"] = b0[f"sb{b}"] * b0[f"latency_ms_b{b}"] / ms
            s.at[i, "vs_parent"] = True
    ops = s["lowp_ops_b256"].map(int8_ops) if "lowp_ops_b256" in s else pd.Series(None, index=s.index)
    s["int8"] = [bool(o and o[0] > 0) or str(e) in INT8_ENGINES for o, e in zip(ops, s["fastest_b256"])]
    return s


def _count_line(c: pd.DataFrame, b: int, noise: float = NOISE) -> str:
    n = int(c[f"sb{b}"].notna().sum())
    e, bf = c[f"se{b}"], c[f"sb{b}"]
    return (f"at batch {b}, **{int((e > 1).sum())} of {n}** compressed variants are faster than fp32 PyTorch eager "
            f"({int((e > 1 + noise).sum())} by more than {noise * 100:.0f}%) and **{int((bf > 1 + noise).sum())} of {n}** are "
            f"faster than the best fp32 deployment of their architecture by more than the run's noise (±{noise * 100:.0f}%), "
            f"{int((bf < 1 / (1 + noise)).sum())} slower by more than it, {int(((bf >= 1 / (1 + noise)) & (bf <= 1 + noise)).sum())} "
            f"within it")


def engine_table(name: str, metrics: dict[str, dict], row: pd.Series) -> pd.DataFrame:
    """Per engine (``metrics/latency.json`` ``by_engine``) for one variant: accuracy, latency and speed-ups
    against its fp32 reference (eager / best fp32, reference times implied by the table row)."""
    by = (((metrics.get("latency") or {}).get("variants") or {}).get(name) or {}).get("by_engine") or {}
    acc = ((((metrics.get("summary") or {}).get("variants") or {}).get(name)) or {}).get("accuracy_by_engine") or {}
    rows = []
    for eng, r in by.items():
        out = {"engine": eng, "test accuracy": _pct(r.get("accuracy", acc.get(eng)))}
        for b in BATCHES:
            ms = r.get(f"latency_ms_b{b}")
            eager, best = row[f"se{b}"] * row[f"latency_ms_b{b}"], row[f"sb{b}"] * row[f"latency_ms_b{b}"]
            mark = " (fastest)" if row.get(f"fastest_b{b}") == eng else ""
            out[f"ms b{b}"] = (_ms(ms) + mark) if ms is not None else "n/a"
            out[f"vs fp32 eager b{b}"] = _x(eager / ms) if ms else "n/a"
            out[f"vs best fp32 b{b}"] = _x(best / ms) if ms else "n/a"
        rows.append(out)
    return pd.DataFrame(rows)


FAMILY_WHY = {
    "integer-grid weights (≤ 8 bit)": (
        "Their b-bit codes are int8 values, so they can run on int8 GEMM/convolution kernels (VNNI dot products in "
        "oneDNN / MLAS: 4× more multiply-accumulates per instruction than fp32, 4× fewer weight bytes), but every "
        "quantized operator also quantizes/dequantizes its activations and the runtime may reorder layouts. {verdict}"),
    "sparse fp32": (
        "Unstructured zeros are stored compactly but decoded to dense weights at load (or run as torch.sparse CSR "
        "where that engine is enabled): dense fp32 kernels do the same work as for the reference, so a gain over "
        "PyTorch eager comes from the engine, not from the sparsity. {verdict}"),
    "low-precision float (fp16/bf16/fp8)": (
        "fp16/fp8 weights are upcast to fp32 at load and the layer inputs are rounded by extra cast operations; "
        "the arithmetic stays fp32 (this CPU stack has no fp8/fp16 GEMM path in these engines). {verdict}"),
    "binary (1-bit) weights": (
        "The ±1 weights are unpacked to fp32 at load: there are no binary (XNOR-popcount) kernels in these engines, "
        "so they do dense fp32 work. {verdict}"),
    "structured (Monarch)": (
        "Two block-diagonal batched matmuls replace each dense layer: fewer FLOPs, which pays off once the layers "
        "are large enough for arithmetic to dominate the per-operator overhead. {verdict}"),
    "recipe (pruned + shared-weight codes)": (
        "The recipe artifact (sparse indices + shared-weight codes + entropy coding) is decoded at load; {verdict}"),
    "dense fp32 (smaller or searched)": (
        "Dense fp32 models: faster only in proportion to the work removed. {verdict}"),
}


def _family_verdict(g: pd.DataFrame, noise: dict[int, float] | None = None) -> str:
    n1, n256 = (noise or {}).get(1, NOISE), (noise or {}).get(256, NOISE)
    m1, m256 = g["sb1"].median(), g["sb256"].median()
    if (g["sb256"] > 1 + n256).any() or (g["sb1"] > 1 + n1).any():
        return (f"Here the median against the best fp32 deployment is {_x(m1)} at batch 1 and {_x(m256)} at batch 256; "
                f"{int((g['sb1'] > 1 + n1).sum())} (batch 1) and {int((g['sb256'] > 1 + n256).sum())} (batch 256) of "
                f"{len(g)} are clearly faster than it.")
    return (f"None of the {len(g)} is clearly faster than the best fp32 deployment (median {_x(m1)} at batch 1, {_x(m256)} at "
            f"batch 256): compressing them did not make inference faster than deploying the fp32 model well.")


def profile_lines(profiles: list[dict]) -> list[str]:
    """Evaluate's per-kernel profiles (``metrics/latency.json`` ``profiles``): the fp32 reference on its fastest
    fp32 engine beside the fastest integer-grid variant on its fastest engine, per batch size: which kernels
    ran, in which precision, for how long.  This is what says why an int8 model is or is not faster."""
    ok = [p for p in profiles if "ops" in p]
    L: list[str] = []
    if ok:
        L += ["**Where the time goes** (each engine's own profiler: ONNX Runtime kernel times, OpenVINO performance "
              "counters; ms per call of the top kernels, their share of the profiled time; `ms measured` is the timed "
              "latency without the profiler):", "",
              _md_table(pd.DataFrame({
                  "batch": [p["batch"] for p in ok], "role": [p["role"] for p in ok], "variant": [f"`{p['variant']}`" for p in ok],
                  "engine": [p["engine"] for p in ok], "ms measured": [_ms(p["ms_measured"]) for p in ok],
                  "top kernels": ["; ".join(f"{o['op']} [{o['kernel']}] {o['ms_per_call']:.3f} ({100 * o['share']:.0f}%)"
                                            for o in p["ops"]) for p in ok]})), ""]
    L += [f"Kernel profiles could not be taken: {p['error']}" for p in profiles if "error" in p]
    return L


def speed_section(v: pd.DataFrame, base: pd.Series | None, metrics: dict[str, dict]) -> list[str]:
    """"Does inference get faster, and on what": counts against fp32 eager and the best fp32 deployment at each
    batch size, the reference of every architecture, a per-family table, per-engine tables for the baseline and
    the fastest integer-grid variant, and every variant's verdict."""
    s = speed_frame(v, base)
    if s.empty or s["se1"].isna().all():
        return []
    lat = metrics.get("latency") or {}
    threads = sorted({int(t) for t in s["threads"].dropna()}) or ([lat["threads"]] if lat.get("threads") else [])
    engines = (metrics.get("summary") or {}).get("engines") or sorted({e for x in s["engines"].dropna() for e in str(x).split(",")})
    comp = s[s["compressed"]]
    noise = run_noise(metrics)
    L = ["## Does inference time decrease, and on what?", "",
         f"Every variant was timed on every installed deploy engine ({', '.join(engines) or '?'}) with "
         f"{', '.join(map(str, threads)) or '?'} thread(s): the median wall-clock time of one call after warm-up, at batch 1 and "
         f"batch 256 (`metrics/latency.json`). A variant's latency is its **fastest** engine at that batch size. Speed-ups "
         f"compare it with the fp32 reference of the **same architecture**, twice: against that model in PyTorch eager, and "
         f"against the **best fp32 deployment** (the fastest engine running the fp32 model). Only the second says whether "
         f"compression, rather than a better runtime, made inference faster. The reference is timed again right after each "
         f"variant, and the variant's ratios use that timing: a shared CPU's speed drifts within a run, and a reference timed "
         f"at another moment would carry that moment into the ratio.", ""]
    if len(comp):
        L += [f"**In this run**: {_count_line(comp, 1, noise[1])}; {_count_line(comp, 256, noise[256])}.", ""]
    refs = reference_table(s, metrics)
    if len(refs):
        t = pd.DataFrame({"architecture": refs["architecture"], "fp32 reference": refs["reference"],
                          "variants compared": refs["variants"],
                          "timings": refs["timings"].map(lambda n: "?" if n is None or pd.isna(n) else f"{int(n)}"),
                          **{f"eager ms b{b}": refs[f"eager_b{b}"].map(_ms) for b in BATCHES},
                          **{f"best fp32 ms b{b} [engine]": [f"{_ms(x)} [{e}]" if isinstance(e, str) else _ms(x) for x, e in
                                                             zip(refs[f"best_fp32_b{b}"], refs[f"best_fp32_runtime_b{b}"])]
                             for b in BATCHES}})
        L += ["The fp32 reference of each architecture (a variant of the table, or a model of the same spec built and timed "
              "by evaluate when the table has none), with the median of its timings during the run:", "", _md_table(t), ""]
    parent = s[s["vs_parent"]]
    if len(parent) and base is not None:
        L += [f"{', '.join(f'`{n}`' for n in parent['variant'])}: a smaller dense architecture, hence its own fp32 reference "
              f"in the table; its speed-ups below are against `{base['variant']}`'s reference (same model before pruning).", ""]
    if len(comp):
        g = comp.groupby("family", sort=False)
        fam = pd.DataFrame({
            "family": list(g.groups),
            "variants": g.size().values,
            "fastest engine b1": [", ".join(f"{e} ×{n}" for e, n in x.value_counts().items()) for _, x in g["fastest_b1"]],
            "fastest engine b256": [", ".join(f"{e} ×{n}" for e, n in x.value_counts().items()) for _, x in g["fastest_b256"]],
            "int8 kernels at b256": [f"{int(x.sum())}/{len(x)}" for _, x in g["int8"]],
            **{f"median vs {w} b{b}": g[f"s{k}{b}"].median().map(_x).values for b in BATCHES
               for k, w in (("e", "fp32 eager"), ("b", "best fp32"))},
            **{f"faster than best fp32 b{b}": [f"{int((x > 1).sum())}/{len(x)}" for _, x in g[f"sb{b}"]] for b in BATCHES}})
        L += ["By number format (from each variant's manifest):", "", _md_table(fam), ""]
        for f, x in g:
            if f in FAMILY_WHY:
                L.append(f"- **{f}** ({len(x)}): " + FAMILY_WHY[f].format(verdict=_family_verdict(x, noise)))
        L.append("")
    for label, row in _engine_table_rows(s, base):
        t = engine_table(row["variant"], metrics, row)
        if len(t):
            L += [f"**{label}** `{row['variant']}` on each engine (reference: `{row['reference']}`"
                  + (f", speed-ups against `{base['variant']}`'s" if row.get("vs_parent") else "") + "):", "", _md_table(t), ""]
            if label.startswith("Fastest") and isinstance(row.get("lowp_ops_b256"), str) and row["lowp_ops_b256"]:
                L += [f"Kernels of its fastest batch-256 engine ({row['fastest_b256']}): {row['lowp_ops_b256']}.", ""]
    L += profile_lines(lat.get("profiles") or [])
    if len(comp):
        c = comp.sort_values("sb256", ascending=False)
        t = pd.DataFrame({"variant": c["variant"], "format": c["family"],
                          **{k: v_ for b in BATCHES for k, v_ in (
                              (f"b{b}: engine", c[f"fastest_b{b}"]), (f"ms b{b}", c[f"latency_ms_b{b}"].map(_ms)),
                              (f"vs eager b{b}", c[f"se{b}"].map(_x)), (f"vs best fp32 b{b}", c[f"sb{b}"].map(_x)))},
                          "int8 ops (b256 engine)": c["lowp_ops_b256"].fillna("").map(lambda t: str(t).split(" (")[0]),
                          "vs best fp32 deployment": [f"b1 {verdict(a, noise[1])}; b256 {verdict(b, noise[256])}"
                                                      for a, b in zip(c["sb1"], c["sb256"])]})
        L += ["Every compressed variant, fastest first at batch 256 against the best fp32 deployment:", "", _md_table(t), ""]
    failed = v[~v.index.isin(measured(v).index)]
    if len(failed):
        L += [f"Not measured ({len(failed)}; see the `error` column of `reports/variants.csv`): "
              + ", ".join(f"`{n}`" for n in failed["variant"]) + ".", ""]
    L += [f"Timings on a shared CPU carry noise: speed-ups within ±{noise[1] * 100:.0f}% at batch 1 and ±{noise[256] * 100:.0f}% "
          f"at batch 256 are reported as such, not as gains: ±{NOISE * 100:.0f}%, or wider where this run measured its own "
          f"references drifting more (p90 / p10 of one model's repeated timings on one engine, `metrics/latency.json` "
          f"`best_fp32_spread_b*`).", ""]
    return L


def _engine_table_rows(s: pd.DataFrame, base: pd.Series | None) -> list[tuple[str, pd.Series]]:
    out = []
    if base is not None and base["variant"] in set(s["variant"]):
        out.append(("Baseline", s[s["variant"] == base["variant"]].iloc[0]))
    ints = s[s["compressed"] & ((s["family"] == "integer-grid weights (≤ 8 bit)") | s["int8"])].dropna(subset=["sb256"])
    if len(ints):
        best = ints.sort_values(["sb256", "sb1"], ascending=False).iloc[0]
        out.append(("Fastest integer-grid variant", best))  # against the best fp32 deployment at batch 256
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


def size_section(v: pd.DataFrame, base: pd.Series | None) -> list[str]:
    if base is None or measured(v).empty:
        return []
    s = measured(v).sort_values("size_bytes")
    ideal = s["params"] * s["avg_weight_bits"] / 8
    t = pd.DataFrame({"variant": s["variant"], "method": s["method"], "avg weight bits": s["avg_weight_bits"].map(lambda x: f"{x:g}"),
                      "stored params": s["params"].map(lambda x: f"{int(x):,}"), "bytes on disk": s["size_bytes"].map(lambda x: f"{int(x):,}"),
                      "× smaller than its fp32": s["size_ratio"].map(lambda r: "n/a" if pd.isna(r) else f"{r:.1f}×"),
                      "overhead vs params·bits/8": ((s["size_bytes"] / ideal - 1) * 100).map(lambda x: "n/a" if pd.isna(x) or np.isinf(x) else f"{x:+.0f}%")})
    small = s.iloc[0]
    return ["## How much does model size drop?", "",
            f"Sizes are the bytes of each variant's deployed files on disk (they load back and give the reported accuracy). "
            f"The fp32 baseline is {int(base['size_bytes']):,} bytes; the smallest variant, `{small['variant']}`, is "
            f"{int(small['size_bytes']):,} bytes ("
            + (f"{small['size_ratio']:.1f}× smaller than its fp32 reference" if not pd.isna(small["size_ratio"])
               else f"{small['model']}: no fp32 reference of that model in the table") + f") at "
            f"{_pct(small['accuracy'])} test accuracy ({_pp(small['d_acc'])} vs its fp32). The last column compares "
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


def single_method_best(v: pd.DataFrame, model: str, within: float = 0.01) -> pd.Series | None:
    """The smallest measured single-method variant of ``model`` within ``within`` of its fp32 reference's accuracy."""
    s = measured(v)
    if "d_acc" not in s:
        return None
    s = s[(s["model"] == model) & (s["method"] != "recipe") & ~(s["family"] == "fp32 reference") & (s["d_acc"] >= -within)]
    return None if s.empty else s.loc[s["size_bytes"].idxmin()]


def target_verdict(ratio: float, base_acc: float, acc: float, min_ratio: float, max_err_pp: float) -> str:
    """Whether a recipe is at least ``min_ratio``× smaller with a test error at most ``max_err_pp`` above its
    fp32 baseline's (both accuracies measured by evaluate on the test split)."""
    if pd.isna(base_acc) or pd.isna(acc):
        return f"Target ≥ {min_ratio:g}× within +{max_err_pp:g} pp test error: not checked (no test accuracy of the baseline or artifact)."
    d = 100 * (base_acc - acc)  # test error increase, pp
    ok = ratio >= min_ratio and d <= max_err_pp + 1e-9
    return (f"Target ≥ {min_ratio:g}× within +{max_err_pp:g} pp test error: **{'met' if ok else 'not met'}** "
            f"({ratio:.1f}×, {d:+.2f} pp).")


def recipes_section(v: pd.DataFrame, recipes: dict[str, dict], trails: pd.DataFrame | None, figures: dict[str, str],
                    trail_links: dict[str, list[str]], base: pd.Series | None, pareto: pd.DataFrame | None = None,
                    baseline_dir: str = "models/baseline") -> list[str]:
    """Each recipe's compression ratio, accuracy change and artifact bytes against its dense baseline (from
    ``metrics/recipes/<name>.json``, the test accuracy from the variants table), beside Deep Compression's
    published LeNet numbers and the suite's best single-method variant of the same model."""
    if not recipes:
        return []
    by = v.set_index("variant") if len(v) else pd.DataFrame()
    dataset = ", ".join(sorted({str(m.get("dataset")) for m in recipes.values() if m.get("dataset")})) or "?"
    rows, notes = [], []
    for name, m in recipes.items():
        vname = f"recipe-{name}"
        row = by.loc[vname] if vname in by.index else None
        model = str(row["model"]) if row is not None and not pd.isna(row["model"]) else "?"
        steps = (" → ".join(trails.loc[(trails["recipe"] == name) & (trails["step"] != "baseline"), "step"].astype(str))
                 if trails is not None and len(trails) and "recipe" in trails else "")
        test_acc = row["accuracy"] if row is not None and "accuracy" in row else np.nan
        base_test = np.nan  # the dense baseline's test accuracy: its variant recipe-<name>-fp32, else the train stage's
        ref = by.loc[f"{vname}-fp32"] if f"{vname}-fp32" in by.index else None
        if ref is not None and not pd.isna(ref["accuracy"]):
            base_test = ref["accuracy"]
        elif base is not None and str(m.get("baseline")) == baseline_dir and model == str(base["model"]):
            base_test = base["accuracy"]
        err = lambda a: "n/a" if pd.isna(a) else f"{(1 - a) * 100:.2f}%"
        rows.append({"recipe": name, "model": model, "steps": steps or "?",
                     "dense baseline": {baseline_dir: "the train stage's", "trained": "trained by the recipe stage"}.get(
                         str(m.get("baseline")), str(m.get("baseline", "?"))),
                     "fp32 bytes": f"{int(m['baseline_bytes']):,}" if m.get("baseline_bytes") else "n/a",
                     "artifact bytes": f"{int(m['size_bytes']):,}" if m.get("size_bytes") else "n/a",
                     "× smaller": f"{m['ratio']:.1f}×" if m.get("ratio") else "n/a",
                     "val acc fp32 → artifact": f"{_pct(m.get('baseline_val_acc'))} → {_pct(m.get('val_acc'))} "
                                                f"({_pp(m['val_acc'] - m['baseline_val_acc']) if m.get('val_acc') is not None and m.get('baseline_val_acc') is not None else 'n/a'})",
                     "test error fp32 → artifact": f"{err(base_test)} → {err(test_acc)}" + (
                         "" if pd.isna(base_test) or pd.isna(test_acc) else f" ({_pp(base_test - test_acc)})"),
                     "sparsity": f"{m['sparsity']:.1%}" if m.get("sparsity") is not None else "n/a"})
        if row is not None and isinstance(row.get("error"), str) and row["error"].strip():
            notes.append(f"`{vname}` could not be measured by evaluate, so it has no test accuracy: {row['error']}")
        if pareto is not None and len(pareto) and "front_acc_size" in pareto:
            on = pareto[(pareto["name"] == vname) & pareto["front_acc_size"].astype(bool)]
            if len(on):
                notes.append(f"`{vname}` is on the accuracy × size Pareto front of all variants and search trials.")
        single = single_method_best(v, model) if model != "?" else None
        if single is not None and m.get("ratio"):
            notes.append(f"`{name}` ({m['ratio']:.1f}× smaller) vs the smallest single-method {model} variant within 1 pp of its "
                         f"fp32 reference, `{single['variant']}`: {single['size_ratio']:.1f}× smaller at {_pct(single['accuracy'])} "
                         f"({_pp(single['d_acc'])}).")
        for dc in DEEP_COMPRESSION:
            if dc["model"] == model and m.get("ratio"):
                notes.append(f"`{name}` ({dc['network']}): {m['ratio']:.1f}× smaller vs Deep Compression's published {dc['ratio']}× "
                             f"({'at least the published ratio' if m['ratio'] >= dc['ratio'] else 'below the published ratio'}); "
                             f"test error {err(test_acc)} (fp32 {err(base_test)}) vs the published {dc['err_pct']:.2f}% "
                             f"(fp32 {dc['err_fp32_pct']:.2f}%). {target_verdict(m['ratio'], base_test, test_acc, dc['ratio'], 0.1)}")
    L = ["## Compression recipes (prune → quantize → encode chains)", "",
         "Each recipe chains library steps on one model and writes one artifact (`variants/recipes/recipe-<name>`); sizes are "
         "its bytes on disk against the fp32 state dict of its own dense baseline, validation accuracies are the recipe "
         "stage's (`metrics/recipes/<name>.json`), test accuracies the evaluate stage's on the re-loaded artifact.", "",
         _md_table(pd.DataFrame(rows)), "",
         f"**Published numbers** (not measured here), {DEEP_COMPRESSION_CITATION}: pruning + trained quantization + Huffman "
         f"coding, on MNIST:", "",
         _md_table(pd.DataFrame({"network (published)": [d["network"] for d in DEEP_COMPRESSION],
                                 "fp32 size": [f"{d['fp32_kb']:,} KB" for d in DEEP_COMPRESSION],
                                 "compressed": [f"{d['compressed_kb']} KB" for d in DEEP_COMPRESSION],
                                 "× smaller": [f"{d['ratio']}×" for d in DEEP_COMPRESSION],
                                 "top-1 error fp32 → compressed": [f"{d['err_fp32_pct']:.2f}% → {d['err_pct']:.2f}%" for d in DEEP_COMPRESSION]})),
         ""]
    if dataset not in ("mnist", "?"):
        L += [f"This run used **{dataset}**, not MNIST: the recipe numbers are not comparable with the published ones.", ""]
    L += [f"- {n}" for n in notes] + ([""] if notes else [])
    if trails is not None and len(trails):
        cols = [c for c in ("step", "size_bytes", "ratio", "val_acc", "sparsity", "seconds") if c in trails]
        for name, t in trails.groupby("recipe", sort=False):
            tt = t[cols].assign(size_bytes=t["size_bytes"].map(lambda x: f"{int(x):,}"), val_acc=t["val_acc"].map(_pct),
                                ratio=t["ratio"].map(lambda r: f"{r:.1f}×"))
            L += [f"Trail of `{name}` (after each step; as Deep Compression's pruning → quantization → coding columns):", "",
                  _md_table(tt.rename(columns={"size_bytes": "bytes", "ratio": "× smaller", "val_acc": "val acc"})), ""]
    if "recipe_trails" in figures:
        L += [f"![recipe trails]({figures['recipe_trails']})", ""]
    links = [f"[{Path(p).parent.name}/{Path(p).name}]({p})" for ps in trail_links.values() for p in ps]
    if links:
        L += ["Trail files: " + ", ".join(links) + ".", ""]
    return L


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo), else platform.processor(), else "unknown"."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def stage_of_metrics() -> dict[str, str]:
    """metrics file stem -> the pipeline stage that writes it (``summary``/``latency`` -> evaluate)."""
    from stages import pipeline

    return {Path(m).stem: n for n, s in pipeline.STAGES.items() if not s.foreach for m in s.metrics}


def time_section(metrics: dict[str, dict], recipes: dict[str, dict], threads: list[int], cpu: str | None = None) -> list[str]:
    """Where the time went: each stage's ``wall_seconds`` (its process, imports included) from metrics/*.json,
    the recipes summed, the total, the CPU and the threads."""
    from stages import pipeline

    owner = stage_of_metrics()
    secs: dict[str, float] = {}
    for stem, m in metrics.items():
        if isinstance(m, dict) and isinstance(m.get("wall_seconds"), (int, float)):
            st = owner.get(stem, stem)
            secs[st] = max(secs.get(st, 0.0), float(m["wall_seconds"]))  # one process per stage: its files share the time
    rec = [float(m["wall_seconds"]) for m in recipes.values() if isinstance(m.get("wall_seconds"), (int, float))]
    if rec:
        secs["recipes"] = sum(rec)
    if not secs:
        return []
    order = list(pipeline.STAGES)
    names = sorted(secs, key=lambda n: (order.index(n) if n in order else len(order), n))
    total = sum(secs.values())
    t = pd.DataFrame({"stage": [f"recipes ({len(rec)} recipes, summed)" if n == "recipes" else n for n in names],
                      "wall seconds": [f"{secs[n]:.1f}" for n in names],
                      "share": [f"{secs[n] / total:.0%}" for n in names]})
    missing = [n for n, s in pipeline.STAGES.items() if s.metrics and n not in secs and n != "report"]
    t.loc[len(t)] = ["**total**" + (" (stages with a record)" if missing else ""), f"**{total:.1f}**", "100%"]
    return (["## Where the time went", "",
            f"Wall-clock seconds of each stage's last run (its process, start-up and imports included: `wall_seconds` in "
            f"`metrics/<stage>.json`; the recipes' `metrics/recipes/*.json` summed). A stage DVC did not rerun keeps the time "
            f"of its last run. CPU: **{cpu or cpu_model()}**, {os.cpu_count()} logical cores; evaluate timed with "
            f"{', '.join(map(str, threads)) or '?'} thread(s).", "", _md_table(t), ""]
            + ([f"No `wall_seconds` recorded for: {', '.join(missing)}.", ""] if missing else []))


def claims_section(metrics: dict[str, dict], links: dict[str, str]) -> list[str]:
    """One paragraph per paper claim the method stages check: lottery tickets, BinaryConnect, HAWQ."""
    L = []
    lot = metrics.get("lottery")
    if isinstance(lot, dict) and isinstance(lot.get("claim"), dict):
        c = lot["claim"]
        dense = c.get("dense", {})
        hits, n = lot.get("budget_hits"), lot.get("trainings")
        L.append(f"- **Lottery tickets** (Frankle & Carbin, ICLR 2019; `metrics/lottery.json`): {lot.get('model', '?')}, "
                 f"{lot.get('rounds', '?')} pruning rounds at rate {lot.get('rate', '?')}, seeds {lot.get('seeds', '?')}; each training "
                 f"stops early on validation loss (patience {lot.get('patience', '?')} iterations, budget "
                 f"{lot.get('max_iterations', '?')}). Dense test accuracy {_pct(c.get('dense_test_acc'))} (early stop at iteration "
                 f"{dense.get('early_stop', '?')}). **{c.get('statement', '?')}.**"
                 + (f" {hits} of {n} trainings hit the iteration budget: their early-stop iteration is only a lower bound."
                    if hits else f" No training hit the iteration budget ({n} trainings)." if n else ""))
    bc = metrics.get("binary")
    if isinstance(bc, dict) and isinstance(bc.get("test_error_pct"), dict):
        parts = [f"{k} {r['mean']:.2f}" + (f" ± {r['std']:.2f}" if r.get("n", 1) > 1 else "") + f"% over {r.get('n', '?')} seed(s) "
                 f"(published: {r['paper']:.2f}%)" for k, r in bc["test_error_pct"].items() if "mean" in r]
        ok = bc.get("det_mean_le_1_5")
        L.append(f"- **BinaryConnect** (Courbariaux et al., NeurIPS 2015; `metrics/binary.json`): MLP {bc.get('hidden', '?')}, "
                 f"{bc.get('epochs', '?')} epochs; test error " + "; ".join(parts) + "."
                 + ("" if ok is None else f" Deterministic mean test error ≤ 1.5%: **{'yes' if ok else 'no'}**."))
    hq = metrics.get("hawq")
    if isinstance(hq, dict) and isinstance(hq.get("claim"), dict):
        c = hq["claim"]
        held = "; ".join(f"`{k}` {'holds' if v else '**does not hold**'}" for k, v in (c.get("holds") or {}).items()) or "nothing checked"
        near = c.get("near_fp32") or {}
        text = (f"- **HAWQ** (Dong et al., ICCV 2019; `metrics/hawq.json`, {c.get('split', 'val')} split): {held}.")
        if near:
            text += (f" The {near['allocator']} allocation at {near['avg_bits']:.2f} average bits reaches {_pct(near['mean'])} against "
                     f"fp32 {_pct(near['fp32_val_acc'])} (fp32 minus mixed: {near['drop_pp']:+.2f} pp; the claim allows at most "
                     f"{near['within_pp']:g} pp).")
        vs = [f"{x['allocator']} {x['avg_bits']:.2f} bits vs uniform {u['uniform_bits']} bits: {u['delta_pp']:+.2f} pp"
              for x in c.get("comparisons", []) if not x.get("trivial") for u in x.get("vs_uniform", [])]
        if vs:
            text += " Mixed vs uniform precision: " + "; ".join(vs) + "."
        elif c.get("comparisons"):
            text += " Every allocation was uniform (trivial), so mixed vs uniform precision was not tested."
        if "hawq_table" in links:
            text += f" Full table: [{Path(links['hawq_table']).name}]({links['hawq_table']})."
        L.append(text)
    return (["## Paper claims checked by the method stages", ""] + L + [""]) if L else []


def _brief_speed(v: pd.DataFrame, base: pd.Series, noise: dict[int, float] | None = None) -> list[str]:
    noise = noise or {b: NOISE for b in BATCHES}
    s = speed_frame(v, base)
    comp = s[s["compressed"]] if len(s) else s
    if comp.empty or comp["sb256"].isna().all():
        return []
    top = comp.loc[comp["sb256"].idxmax()]
    text = (f"- **Inference time**: {_count_line(comp, 1, noise[1])}; {_count_line(comp, 256, noise[256])}. The fastest against "
            f"the best fp32 deployment at batch 256 is `{top['variant']}` on {top['fastest_b256']}: {verdict(top['sb256'], noise[256])} "
            f"against the best fp32 deployment, {verdict(top['se256'], noise[256])} against fp32 PyTorch eager.")
    if not (comp["sb256"] > 1).any() and not (comp["sb1"] > 1).any():
        text += " **No compressed variant is faster than the best fp32 deployment of its architecture at either batch size.**"
    return [text]


def build_report(variants: pd.DataFrame, trials: pd.DataFrame, pareto: pd.DataFrame, metrics: dict[str, dict],
                 figures: dict[str, str], other_plots: list[str], commit: str = "",
                 replicates: list[dict] | None = None, *, recipes: dict[str, dict] | None = None,
                 trails: pd.DataFrame | None = None, trail_links: dict[str, list[str]] | None = None,
                 links: dict[str, str] | None = None, cpu: str | None = None) -> str:
    """Markdown text of the report; ``figures``/``other_plots``/``trail_links``/``links`` are paths relative to the
    report.  ``recipes``: metrics/recipes/<name>.json by name; ``trails``: the recipe trails (plots/recipes/*/trail.csv)
    concatenated; ``links``: other files to link (``hawq_table``); ``cpu``: the CPU model (default: this machine's)."""
    from stages import pipeline

    v = variants.copy()
    ok = measured(v)
    base = pick_baseline(ok) if len(ok) else None
    v = enrich(v, base)
    recipes, links, trail_links = recipes or {}, links or {}, trail_links or {}
    L = ["# Compression report", ""]
    L += _dataset_banner(v, metrics) + [""]
    model = ", ".join(sorted(set(v["model"].astype(str)))) if len(v) else "?"
    L += [f"Models: {model}. Variants: {len(v)} ({len(ok)} measured); search trials: {len(trials)}. Generated "
          f"{dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}{f' at commit {commit}' if commit else ''} "
          f"by `dvc repro` (stage `report`) from `reports/variants.csv`, `metrics/*.json` and the search trials.", ""]
    if base is not None:
        eager = {b: base[f"speedup_vs_eager_b{b}"] * base[f"latency_ms_b{b}"] if f"speedup_vs_eager_b{b}" in base else np.nan
                 for b in BATCHES}
        L += ["## Answers in brief", "",
              f"- **Baseline** `{base['variant']}`: test accuracy {_pct(base['accuracy'])}, {int(base['size_bytes']):,} bytes; "
              f"fastest deployment {_ms(base['latency_ms_b1'])} ms at batch 1 ({base.get('fastest_b1', '?')}) and "
              f"{_ms(base['latency_ms_b256'])} ms at batch 256 ({base.get('fastest_b256', '?')}); in PyTorch eager "
              f"{_ms(eager[1])} ms and {_ms(eager[256])} ms."]
        L += _ptq_qat_answers(v, base)
        L += _brief_speed(v, base, run_noise(metrics))
        others = measured(v)[measured(v)["variant"] != base["variant"]]
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
        bad = s[~s.index.isin(measured(s).index)]
        if len(bad):
            L += ["Not measured: " + " ".join(f"`{r['variant']}`: {r.get('error', '')}" for _, r in bad.iterrows()), ""]
        gap = s[(s["accuracy_sim"].notna()) & ((s["accuracy"] - s["accuracy_sim"]).abs() > 0.001)]
        if len(gap):
            on_int8 = gap["accuracy_runtime"].astype(str).isin(("onnxruntime", "openvino", *INT8_ENGINES)) if "accuracy_runtime" in gap else gap["family"] == ""
            L += ["Deployed vs simulated accuracy differ by more than 0.1 pp for: "
                  + ", ".join(f"`{r['variant']}` ({_pp(r['accuracy'] - r['accuracy_sim'])}"
                              + (f", on {r['accuracy_runtime']}" if isinstance(r.get("accuracy_runtime"), str) else "") + ")"
                              for _, r in gap.iterrows())
                  + (". Where the deployed runtime uses integer kernels, they round differently from the float "
                     "simulation (requantized intermediate results, integer accumulation, fused bias/ReLU); the variant "
                     "notes above give each stage's own explanation." if ((gap["family"] == "integer-grid weights (≤ 8 bit)") & on_int8).any()
                     else ". The variant notes above give the stage's explanation."), ""]
    threads = sorted({int(t) for t in ok["threads"].dropna()}) if "threads" in ok and len(ok) else []
    L += speed_section(v, base, metrics)
    L += size_section(v, base)
    L += recipes_section(v, recipes, trails, figures, trail_links, base, pareto, pipeline.BASELINE)
    L += claims_section(metrics, links)
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
    L += time_section(metrics, recipes, threads, cpu)
    if other_plots:
        L += ["## Figures from the method stages", ""]
        for p in other_plots:
            L += [f"### {Path(p).parent.name}/{Path(p).stem}", "", f"![{Path(p).stem}]({p})", ""]
    L += ["## Caveats", "",
          f"- Latencies come from a CPU with {os.cpu_count()} logical cores ({cpu or cpu_model()}), possibly shared with other "
          f"jobs; repeat `dvc repro evaluate report` on an idle machine for firmer numbers.",
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


def collect_trails(folder: str | Path) -> tuple[pd.DataFrame, dict[str, list[Path]]]:
    """The recipe trails (``<folder>/<name>/trail.csv``) concatenated, and every file under each recipe's folder."""
    parts, files = [], {}
    for d in sorted(p for p in Path(folder).glob("*") if p.is_dir()):
        files[d.name] = sorted(p for p in d.iterdir() if p.is_file())
        t = d / "trail.csv"
        if t.is_file():
            df = pd.read_csv(t)
            parts.append(df if "recipe" in df else df.assign(recipe=d.name))
    return (pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()), files


def recipe_trails(trails: pd.DataFrame | None, path: Path) -> Path | None:
    """``recipe_trails.png``: every recipe's trail (plots/recipes/*/trail.csv rows: recipe, step, size_bytes, val_acc)
    in one figure, drawn by :func:`dashboards.methods.recipe_trails`; None when there are none.
    (Here rather than in dashboards.figures, which the search stage imports: its deps stay free of the recipes.)"""
    if trails is None or trails.empty or not {"recipe", "step", "size_bytes", "val_acc"} <= set(trails.columns):
        return None
    from dashboards.methods import recipe_trails

    return recipe_trails(trails.to_dict("records"), path)


def find_plots(globs: list[str], exclude: Path) -> list[Path]:
    found = []
    for g in globs:
        for p in sorted(glob.glob(g, recursive=True)):
            path = Path(p)
            if path.suffix.lower() == ".png" and exclude.resolve() not in path.resolve().parents and path not in found:
                found.append(path)
    return found


def generate(cfg, commit: str = "", metrics_dir: str = "metrics", *, variants: str | None = None, trials: str | None = None,
             pareto: str | None = None, figures: str | None = None, out: str | None = None,
             recipe_metrics: str | None = None, recipe_plots: str | None = None) -> Path:
    """Pareto table + figures + report: ``cfg`` is the params section ``report``; the paths default to the pipeline's
    (stages/pipeline.py): the variants table, search trials, metrics (``metrics_dir``; the recipes' in
    ``recipe_metrics``, default ``<metrics_dir>/recipes``) and recipe trails read, the Pareto table, figures and report
    written."""
    from dashboards.figures import all_figures
    from dashboards.pareto import build, points_from_files, replicate_groups
    from stages import pipeline

    variants, trials = variants or pipeline.VARIANTS_CSV, trials or pipeline.SEARCH_TRIALS
    pareto, figures, out = pareto or pipeline.PARETO_CSV, figures or pipeline.FIGURES, out or pipeline.REPORT_MD
    recipe_metrics = recipe_metrics or str(Path(metrics_dir) / Path(pipeline.RECIPE_METRICS).name)
    recipe_plots = recipe_plots or pipeline.RECIPE_PLOTS

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
    trails, trail_files = collect_trails(recipe_plots)
    figs += [f for f in [recipe_trails(trails, fig_dir / "recipe_trails.png")] if f is not None]
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    rel = lambda p: os.path.relpath(p, out.parent)
    figures = {Path(f).stem: rel(f) for f in figs}
    others = [rel(p) for p in find_plots(cfg.plot_globs, fig_dir)]
    metrics = collect_metrics(metrics_dir)
    hawq_table = Path(pipeline.reports("hawq")) / "table_vi.md"
    links = {"hawq_table": rel(hawq_table)} if hawq_table.is_file() else {}
    replicates = None
    reps = replicate_groups(pts[pts["source"] == "variant"], cfg.confidence) if len(pts) else pd.DataFrame()
    if len(reps) and (reps["n"] > 1).any():
        r = reps[reps["n"] > 1]
        replicates = [{"variant": x["base"], "method": x["method"], "runtime": x["runtime"], "seeds": int(x["n"]),
                                  "accuracy": f"{x['accuracy_mean'] * 100:.2f} ± {x['accuracy_ci'] * 100:.2f} %",
                                  "size_bytes": f"{x['size_bytes_mean']:.0f}",
                                  "ms b256": f"{x['latency_ms_b256_mean']:.3f} ± {x['latency_ms_b256_ci']:.3f}"} for _, x in r.iterrows()]
    out.write_text(build_report(variants, trials, pts, metrics, figures, others, commit, replicates,
                                recipes=collect_metrics(recipe_metrics), trails=trails,
                                trail_links={k: [rel(p) for p in ps] for k, ps in trail_files.items()}, links=links))
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
