"""A finished study as results: its summary (front, dominated starts) and its Pareto-optimal trials written as
variants (compress/variants.py) that the evaluate stage measures on the test split."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from compress.variants import Form, Manifest, write_variant
from studies.objectives import eval_bits, eval_sparsity

# kind -> (deploy runtime, artifact file); joint trials have no deployable file format of their own
EXPORTS = {"bits": ("packed", "model.cspk"), "sparsity": ("sparse-eager", "model.safetensors")}


def dominated_starts(df: pd.DataFrame) -> dict[str, bool]:
    """For each enqueued start: is it dominated by some searched (non-start) trial?"""
    out = {}
    searched = df[df["start"] == ""]
    for _, r in df[df["start"] != ""].iterrows():
        better = ((searched["accuracy"] >= r["accuracy"]) & (searched["size_bytes"] <= r["size_bytes"])
                  & ((searched["accuracy"] > r["accuracy"]) | (searched["size_bytes"] < r["size_bytes"])))
        out[r["start"]] = bool(better.any())
    return out


def summarize(name: str, df: pd.DataFrame) -> dict:
    """The study's numbers for metrics/search.json."""
    base = df[df["start"].str.startswith("uniform")]
    return {
        "study": name, "n_complete": int(len(df)), "front_size": int(df["pareto"].sum()),
        "best_accuracy": float(df["accuracy"].max()), "smallest_bytes": float(df["size_bytes"].min()),
        "front": df[df["pareto"]].sort_values("size_bytes")[["trial", "accuracy", "size_bytes", "start"]].to_dict("records"),
        "starts_dominated_by_search": dominated_starts(df),
        "uniform": base[["start", "accuracy", "size_bytes"]].to_dict("records"),
    }


def export(kind: str, ctx, study, df: pd.DataFrame, n: int, out: Path, dataset: str, seed: int,
           qat: dict | None = None) -> list[str]:
    """The ``n`` most accurate Pareto-optimal trials of ``study`` as variants under ``out``; their artifacts
    are rebuilt from each trial's own recipe (PTQ, or the seeded, so identical, QAT fine-tune)."""
    if kind not in EXPORTS or n == 0:
        return []
    runtime, artifact = EXPORTS[kind]
    names = []
    for _, r in df[df["pareto"]].sort_values("accuracy", ascending=False).head(n).iterrows():
        cfg = json.loads(r["config"])
        name = f"search-{kind}-t{int(r['trial']):03d}"
        folder = Path(out) / name
        folder.mkdir(parents=True, exist_ok=True)
        if kind == "bits":
            m = eval_bits(ctx, cfg, keep=folder / artifact, qat=qat)
        else:
            m = eval_sparsity(ctx, cfg, keep=folder / artifact)
        act = [b for b in cfg.get("act_bits", {}).values() if b is not None]
        write_variant(folder, Manifest(
            variant=name, stage="search", method=f"search-{kind}", model=ctx.spec, dataset=dataset, seed=seed,
            avg_weight_bits=m["avg_weight_bits"], act_bits=max(act) if act else None, sparsity=m["sparsity"],
            params=int(m["params"]), deploy=Form(runtime=runtime, files=[artifact]),
            notes=f"Pareto-optimal trial {int(r['trial'])} of study {study.study_name} (validation accuracy "
                  f"{r['accuracy']:.4f}); per-layer config in extra",
            extra={"config": cfg, "study": study.study_name, "trial": int(r["trial"])}))
        names.append(name)
    return names
