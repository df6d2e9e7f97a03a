"""search: multi-objective Optuna searches (per-layer bits, sparsity, joint) -> trials, fronts, variants.

Each study in ``search.studies`` resumes from ``search.storage`` until it holds
``search.n_trials`` complete trials (finished trials are never redone).  Writes
``search/trials.csv`` (every complete trial), ``metrics/search.json`` (fronts; are the uniform
and HAWQ starts dominated by a searched trial?), ``plots/search/trials.csv`` and, for the
``search.export_front`` most accurate Pareto-optimal trials of each exportable study,
variant folders under ``variants/search`` that the evaluate stage measures on the test split.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd

from compress.data import load_meta
from compress.variants import Form, Manifest, write_variant
from stages.common import die, load_params_or_exit, stage_args, write_json
from studies.common import make_pruner, make_tracker, plot_study, run_study, study_name, trials_frame
from studies.objectives import eval_bits, eval_sparsity, load_context
from studies.storage import StorageError, open_storage

EXPORT_RUNTIME = {"bits": None, "sparsity": "sparse-eager"}  # joint: no deploy runtime (its own file format)
ARTIFACT = {"bits": "model.cspk", "sparsity": "model.safetensors"}


def _packed_runtime() -> str | None:
    """The quant family's runtime for bit-packed files, if it registers one."""
    from compress.runtimes import RUNTIMES, _load_families

    _load_families()
    for name in ("packed",):
        if name in RUNTIMES:
            return name
    return None


def dominated_starts(df: pd.DataFrame) -> dict[str, bool]:
    """For each enqueued start: is it dominated by some searched (non-start) trial?"""
    out = {}
    searched = df[df["start"] == ""]
    for _, r in df[df["start"] != ""].iterrows():
        better = ((searched["accuracy"] >= r["accuracy"]) & (searched["size_bytes"] <= r["size_bytes"])
                  & ((searched["accuracy"] > r["accuracy"]) | (searched["size_bytes"] < r["size_bytes"])))
        out[r["start"]] = bool(better.any())
    return out


def export(kind: str, ctx, study, df: pd.DataFrame, n: int, meta: dict, seed: int, qat: dict | None = None) -> list[str]:
    runtime = EXPORT_RUNTIME[kind] if kind != "bits" else _packed_runtime()
    if runtime is None or n == 0:
        return []
    names = []
    front = df[df["pareto"]].sort_values("accuracy", ascending=False).head(n)
    for _, r in front.iterrows():
        cfg = json.loads(r["config"])
        name = f"search-{kind}-t{int(r['trial']):03d}"
        folder = Path("variants/search") / name
        folder.mkdir(parents=True, exist_ok=True)
        if kind == "bits":  # the trial's own recipe: PTQ, or the (seeded, so identical) QAT fine-tune
            m = eval_bits(ctx, cfg, keep=folder / ARTIFACT[kind], qat=qat)
        else:
            m = eval_sparsity(ctx, cfg, keep=folder / ARTIFACT[kind])
        act = [b for b in cfg.get("act_bits", {}).values() if b is not None]
        write_variant(folder, Manifest(
            variant=name, stage="search", method=f"search-{kind}", model=ctx.spec, dataset=meta["dataset"], seed=seed,
            avg_weight_bits=m["avg_weight_bits"], act_bits=max(act) if act else None, sparsity=m["sparsity"],
            params=int(m["params"]), deploy=Form(runtime=runtime, files=[ARTIFACT[kind]]),
            notes=f"Pareto-optimal trial {int(r['trial'])} of study {study.study_name} (validation accuracy "
                  f"{r['accuracy']:.4f}); per-layer config in extra",
            extra={"config": cfg, "study": study.study_name, "trial": int(r["trial"])}))
        names.append(name)
    return names


def main() -> None:
    args = stage_args(__doc__)
    P = load_params_or_exit(args.params)
    S = P.search
    try:
        meta = load_meta(P.data.out)
        open_storage(S.storage, S.heartbeat_s)  # unreachable storage: one line, before any trial
        ctx = load_context(P, need_ranges=any(k in ("bits", "joint") for k in S.studies))
    except (StorageError, FileNotFoundError, ValueError) as e:
        die(str(e))
    import importlib

    frames, summary, exported = [], {}, []
    shutil.rmtree("variants/search", ignore_errors=True)
    for kind in S.studies:
        spec, _ = importlib.import_module(f"studies.{kind}").build_spec(P, ctx)
        name = study_name(P, kind, spec)
        tracker = make_tracker(P, meta, kind) if P.tracking.enabled else None
        study = run_study(spec, S.storage, name, S.n_trials, mode="total", sampler=S.sampler, seed=P.seed,
                          population_size=S.population_size, heartbeat_s=S.heartbeat_s, tracker=tracker,
                          on_done=lambda st: plot_study(st, Path(S.out) / "figures"), pruner=make_pruner(S))
        df = trials_frame(study)
        frames.append(df)
        base = df[df["start"].str.startswith("uniform")]
        summary[kind] = {
            "study": name, "n_complete": int(len(df)), "front_size": int(df["pareto"].sum()),
            "best_accuracy": float(df["accuracy"].max()), "smallest_bytes": float(df["size_bytes"].min()),
            "front": df[df["pareto"]].sort_values("size_bytes")[["trial", "accuracy", "size_bytes", "start"]].to_dict("records"),
            "starts_dominated_by_search": dominated_starts(df),
            "uniform": base[["start", "accuracy", "size_bytes"]].to_dict("records"),
        }
        qat = {"steps": S.qat_steps, "report_every": S.qat_report_every, "lr": S.qat_lr} if S.trial_mode == "qat" else None
        exported += export(kind, ctx, study, df, S.export_front, meta, P.seed, qat)
    trials = pd.concat(frames, ignore_index=True)
    Path(S.out).mkdir(parents=True, exist_ok=True)
    trials.to_csv(Path(S.out) / "trials.csv", index=False, float_format="%.6g")
    Path("plots/search").mkdir(parents=True, exist_ok=True)
    trials[["study", "kind", "trial", "accuracy", "size_bytes", "pareto"]].to_csv("plots/search/trials.csv", index=False)
    write_json("metrics/search.json", {"dataset": meta["dataset"], "dataset_substituted": bool(meta.get("substituted")),
                                       "accuracy_split": "val", "sampler": S.sampler, "studies": summary,
                                       "exported_variants": exported})
    for kind, s in summary.items():
        print(f"search {kind}: {s['n_complete']} trials, front {s['front_size']}, best val acc {s['best_accuracy']:.4f}, "
              f"smallest {s['smallest_bytes']:.0f} B; starts dominated by search: {s['starts_dominated_by_search']}")
    if not Path("variants/search").exists():
        Path("variants/search").mkdir(parents=True)  # a declared out even when nothing is exportable


if __name__ == "__main__":
    main()
