"""search: multi-objective Optuna searches (per-layer bits, sparsity, joint) -> trials, fronts, variants.

Each study in ``search.studies`` resumes from ``search.storage`` until it holds ``search.n_trials`` complete
trials (finished trials are never redone). Writes ``search/trials.csv`` (every complete trial),
``metrics/search.json`` (fronts; are the uniform and HAWQ starts dominated by a searched trial?),
``plots/search/trials.csv`` and, for the ``search.export_front`` most accurate Pareto-optimal trials of each
exportable study, variant folders under ``variants/search`` that the evaluate stage measures on the test split.
"""
from __future__ import annotations

import importlib
from pathlib import Path

import pandas as pd

from compress.tables import write_csv
from stages.common import Stage
from stages.pipeline import SEARCH_FIGURES, SEARCH_TRIALS
from studies.common import (
    make_pruner,
    make_tracker,
    plot_study,
    run_study,
    study_name,
    trials_frame,
)
from studies.config import STUDY_MODULES
from studies.export import export, summarize
from studies.objectives import load_context
from studies.storage import StorageError, open_storage


def main() -> None:
    st = Stage("search", __doc__)
    P, S, meta = st.P, st.P.search, st.meta
    try:
        open_storage(S.storage, S.heartbeat_s)  # unreachable storage: one line, before any trial
        ctx = load_context(P, need_ranges=any(k in ("bits", "joint") for k in S.studies))
    except (StorageError, FileNotFoundError, ValueError) as e:
        st.die(str(e))
    frames, summary, exported = [], {}, []
    out = st.variants  # a declared out even when nothing is exportable
    qat = {"steps": S.qat_steps, "report_every": S.qat_report_every, "lr": S.qat_lr} if S.trial_mode == "qat" else None
    for kind in S.studies:
        spec, _ = importlib.import_module(STUDY_MODULES[kind]).build_spec(P, ctx)
        name = study_name(P, kind, spec)
        study = run_study(spec, S.storage, name, S.n_trials, mode="total", sampler=S.sampler, seed=P.seed,
                          population_size=S.population_size, heartbeat_s=S.heartbeat_s,
                          tracker=make_tracker(P, meta, kind) if P.tracking.enabled else None,
                          on_done=lambda s: plot_study(s, Path(SEARCH_FIGURES)), pruner=make_pruner(S))
        df = trials_frame(study)
        frames.append(df)
        summary[kind] = summarize(name, df)
        exported += export(kind, ctx, study, df, S.export_front, out, meta["dataset"], P.seed, qat)
    trials = pd.concat(frames, ignore_index=True)
    write_csv(SEARCH_TRIALS, trials, float_format="%.6g")
    write_csv(st.plot("trials.csv"), trials[["study", "kind", "trial", "accuracy", "size_bytes", "pareto"]])
    st.write_metrics({"accuracy_split": "val", "sampler": S.sampler, "studies": summary, "exported_variants": exported})
    for kind, s in summary.items():
        print(f"search {kind}: {s['n_complete']} trials, front {s['front_size']}, best val acc {s['best_accuracy']:.4f}, "
              f"smallest {s['smallest_bytes']:.0f} B; starts dominated by search: {s['starts_dominated_by_search']}")


if __name__ == "__main__":
    main()
