"""Measure every variant the same way: deployed accuracy, simulated accuracy, bytes on disk,
measured latency on every enabled deploy engine, speed-ups against the fp32 model it came from.
Rules: accuracy is measured on the artifact re-loaded from disk; size is the bytes of the
deployed files; latency is wall-clock on real runtimes (warm-up, then the median of adaptive
repeats, thread count recorded), never estimated from FLOPs.  The engines and the graphs they
run are :mod:`compress.deploy`'s; this module turns its results into the variants table.
"""
from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from tqdm.auto import tqdm

from compress.runtimes import load_predictor
from compress.variants import ArtifactError, Manifest, artifact_bytes, one_line

COLUMNS = ["variant", "stage", "method", "model", "dataset", "seed", "avg_weight_bits", "act_bits", "sparsity",
           "params", "size_bytes", "accuracy", "accuracy_runtime", "accuracy_sim", "accuracy_spread_pp",
           "latency_ms_b1", "latency_ms_b256", "fastest_b1", "fastest_b256", "runtime", "runtime_b1",
           "speedup_vs_eager_b1", "speedup_vs_eager_b256", "speedup_vs_best_fp32_b1", "speedup_vs_best_fp32_b256",
           "reference", "lowp_ops_b256", "engines", "threads", "notes", "error"]


def set_threads(n: int | None) -> int:
    n = n or os.cpu_count() or 1
    torch.set_num_threads(n)
    return torch.get_num_threads()


def predict_all(predict: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Predicted classes for all of ``x`` using only full batches of ``batch_size``.

    The final partial batch is padded (and the padding discarded) so that compiled runtimes
    see a single static shape.
    """
    preds = []
    for i in range(0, len(x), batch_size):
        xb = x[i : i + batch_size]
        n = len(xb)
        if n < batch_size:
            xb = torch.cat([xb, xb.new_zeros((batch_size - n, *xb.shape[1:]))])
        out = torch.as_tensor(predict(xb))
        preds.append(out[:n].argmax(1))
    return torch.cat(preds)


def accuracy(predict, x: torch.Tensor, y: torch.Tensor, batch_size: int = 256) -> float:
    return float((predict_all(predict, x, batch_size) == y).double().mean().item())


DETERMINISTIC = ["accuracy", "accuracy_runtime", "accuracy_sim", "size_bytes", "params", "avg_weight_bits", "act_bits", "sparsity"]
LATENCY = ["latency_ms_b1", "latency_ms_b256", "fastest_b1", "fastest_b256", "speedup_vs_eager_b1", "speedup_vs_eager_b256",
           "speedup_vs_best_fp32_b1", "speedup_vs_best_fp32_b256", "reference"]


def _r(v):
    return round(v, 6) if isinstance(v, float) else v


def records(rows: list[dict], details: dict, meta: dict, threads: int) -> tuple[dict, dict]:
    """(metrics/summary.json, metrics/latency.json) of an :func:`evaluate_all` run.  The summary holds
    only what the artifacts and engines determine (accuracies per engine, sizes, the failed rows), so
    two runs give the same file; latencies, fastest engines, speed-ups and references go apart."""
    ok = [r for r in rows if not r["error"]]
    per = details.get("variants", {})
    summary = {"dataset": meta["dataset"], "dataset_substituted": meta["substituted"], "n_variants": len(rows),
               "engines": details.get("engines"),
               "variants": {r["variant"]: {**{k: _r(r[k]) for k in DETERMINISTIC},
                                           "accuracy_by_engine": {n: _r(a) for n, a in per[r["variant"]]["accuracy"].items()},
                                           "engines_skipped": per[r["variant"]]["skipped"]} for r in ok}}
    failed = {r["variant"]: r["error"] for r in rows if r["error"]}
    if failed:
        summary["failed"] = failed
    latency = {"dataset": meta["dataset"], "threads": threads, "references": details.get("references"),
               "profiles": details.get("profiles", []),
               "variants": {r["variant"]: {**{k: r[k] for k in LATENCY}, "by_engine": per[r["variant"]]["latency"]} for r in ok}}
    return summary, latency


def measure_latency(predict: Callable[[torch.Tensor], torch.Tensor], example: torch.Tensor, warmup: int = 10,
                    repeats: int = 50) -> dict:
    """Wall-clock latency of one call in milliseconds: median, p10, p90 over ``repeats``."""
    for _ in range(warmup):
        predict(example)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        predict(example)
        times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    q = lambda f: times[min(len(times) - 1, int(f * len(times)))]
    return {"median_ms": statistics.median(times), "p10_ms": q(0.1), "p90_ms": q(0.9), "repeats": repeats,
            "threads": torch.get_num_threads()}


def _manifest_columns(manifest: Manifest) -> dict:
    return {"variant": manifest.variant, "stage": manifest.stage, "method": manifest.method,
            "model": manifest.model.get("name"), "dataset": manifest.dataset, "seed": manifest.seed,
            "avg_weight_bits": manifest.avg_weight_bits, "act_bits": manifest.act_bits, "sparsity": manifest.sparsity,
            "params": manifest.params, "notes": manifest.notes}


def measure(folder: Path, manifest: Manifest, test_x: torch.Tensor, test_y: torch.Tensor, cfg, engines) -> dict:
    """:func:`compress.deploy.measure.measure_variant` on ``engines``; a variant no engine could run
    raises the one-line reason (an :class:`ArtifactError` when its files are missing or corrupt)."""
    from compress.deploy.measure import MeasureConfig, measure_variant

    res = measure_variant(folder, manifest, test_x, test_y, cfg=MeasureConfig.from_section(cfg), engines=engines)
    if not res["runtimes"]:
        load_predictor(folder, manifest)  # the artifact's own runtime names the file at fault, if one is
        why = "; ".join(f"{k}: {v}" for k, v in res["skipped"].items() if not v.startswith("n/a:")) or "no engine applies"
        raise RuntimeError(one_line(f"no deploy engine ran it ({why})", 400))
    return res


def table_row(folder: Path, manifest: Manifest, res: dict, ref: dict | None) -> tuple[dict, dict]:
    """(variants-table row, per-runtime accuracies) of one measured variant (``ref``: its fp32 reference)."""
    from compress.deploy.measure import variant_rows

    det, lat = variant_rows(manifest, res, ref)
    fast = {b: lat.get(f"fastest_b{b}") for b in (1, 256)}
    row = {**_manifest_columns(manifest), "size_bytes": artifact_bytes(folder, manifest.deploy),
           "accuracy": det["accuracy"], "accuracy_runtime": det["accuracy_runtime"], "accuracy_sim": det["accuracy_sim"],
           "accuracy_spread_pp": det["accuracy_spread_pp"],
           "latency_ms_b1": lat.get("latency_ms_b1"), "latency_ms_b256": lat.get("latency_ms_b256"),
           "fastest_b1": fast[1], "fastest_b256": fast[256], "runtime": lat.get("runtime_b256"), "runtime_b1": lat.get("runtime_b1"),
           **{k: lat.get(k) for k in COLUMNS if k.startswith("speedup_")}, "reference": lat.get("reference"),
           "lowp_ops_b256": lat.get("lowp_ops_b256"), "engines": ",".join(res["runtimes"]), "threads": torch.get_num_threads(),
           "error": None}
    per_runtime = {n: {"accuracy": r.get("accuracy"), **{k: v for k, v in r.items() if k.startswith("latency_ms_b")}}
                   for n, r in res["runtimes"].items()}
    return row, {"accuracy": {n: v["accuracy"] for n, v in per_runtime.items()}, "latency": per_runtime,
                 "skipped": det["skipped"]}


def evaluate_variant(folder: Path, manifest: Manifest, test_x: torch.Tensor, test_y: torch.Tensor, cfg,
                     engines=None) -> dict:
    """One row of the variants table, measured on ``engines`` (None: ``cfg.runtimes``), without a
    speed-up reference (the evaluate stage adds those once every variant is measured)."""
    from compress.deploy.engines import resolve_runtimes

    engines = engines if engines is not None else resolve_runtimes(getattr(cfg, "runtimes", None))[0]
    return table_row(folder, manifest, measure(folder, manifest, test_x, test_y, cfg, engines), None)[0]


def failed_row(variant: str, stage: str, error: str, manifest: Manifest | None = None) -> dict:
    """The table row of a variant that could not be measured: what the manifest says (when it
    could be read), no measurements, and ``error``: the one-line reason."""
    row = {c: None for c in COLUMNS}
    if manifest is not None:
        row.update(_manifest_columns(manifest), runtime=manifest.deploy.runtime)
    row.update(variant=variant, stage=stage, error=error)
    return row


def evaluate_all(found: Sequence[tuple[Path, Manifest]], test_x: torch.Tensor, test_y: torch.Tensor, cfg,
                 on_row: Callable[[dict], None] | None = None, broken: Sequence[ArtifactError] = (),
                 progress: bool = True, details: dict | None = None) -> tuple[list[dict], list[str]]:
    """Measure every variant of ``found`` on every enabled engine (``cfg.runtimes``; None: every
    installed one); one that fails does not stop the others.  The fp32 reference of each
    architecture (the train stage's baseline, else the first dense fp32 variant, else a model built
    from the spec; :class:`compress.deploy.measure.ReferenceClock`) is timed right after each variant,
    and that timing gives the row's speed-ups against fp32 eager and the best fp32 engine.

    A variant whose artifact is missing or corrupt (an :class:`ArtifactError`), or that no engine
    could run, becomes a row with no measurements and ``error`` = one line naming the variant,
    the file and the stage that rebuilds it.  ``broken`` (unreadable manifests, from
    :func:`compress.variants.scan`) become such rows too.  ``on_row(row)`` is called after each
    measured or failed variant (speed-ups included).  ``details`` (a dict)
    receives per variant the per-runtime accuracies, latencies and skipped engines, and the
    references and engines used.

    Returns ``(rows, failures)``: the rows in stage / variant order and the error lines; the
    caller writes the table and then fails when ``failures`` is not empty, so that a partial
    table is never taken for a complete one.
    """
    from compress.deploy.engines import resolve_runtimes
    from compress.deploy.measure import MeasureConfig, ReferenceClock, kernel_profiles

    engines, skipped = resolve_runtimes(getattr(cfg, "runtimes", None))
    mcfg = MeasureConfig.from_section(cfg)
    clock = ReferenceClock(found, engines, mcfg, test_x)  # fp32 references timed next to each variant
    # 1. one ordered work list: readable manifests and broken ones, by folder
    work = [(folder, man, None) for folder, man in found] + [(e.path.parent, None, e) for e in broken]
    work.sort(key=lambda w: (w[0].parent.name, w[0].name))
    rows, failures, measured = [], [], []
    bar = {} if progress else {"disable": True}  # progress=True leaves it to tqdm (and TQDM_DISABLE)
    for folder, man, err in tqdm(work, desc="evaluate variants", **bar):
        # 2. measure on every engine, or record why not
        if err is not None:
            row = failed_row(err.variant or folder.name, err.stage or folder.parent.name, str(err))
        else:
            try:
                res = measure(folder, man, test_x, test_y, cfg, engines)
                ref = clock.record(man, res) or clock.current(man)  # the reference timed right after the variant
                row, extra = table_row(folder, man, res, ref)
                measured.append((folder, man, res, extra))
            except ArtifactError as e:
                row = failed_row(man.variant, man.stage, str(e), man)
            except Exception as e:  # noqa: BLE001  a runtime that loads but fails to run: the others still count
                msg = one_line(f"{type(e).__name__}: {e}", 300)
                row = failed_row(man.variant, man.stage, f"variant {man.variant}: could not be measured from {folder} ({msg}); "
                                                         f"rebuild it: dvc repro {man.stage}", man)
        if row["error"]:
            failures.append(row["error"])
        rows.append(row)
        if on_row is not None:
            on_row(row)
    # 3. the fp32 references over the run (each row's speed-ups used the timing next to it)
    refs = clock.summary()
    out = details if details is not None else {}
    out.update(engines=[e.name for e in engines], skipped_engines=skipped, references=refs, variants={})
    for _, man, _, extra in measured:
        out["variants"][man.variant] = extra
    # 4. per-kernel profiles of the fp32 reference and the fastest integer-grid variant (why int8 is or is not faster)
    try:
        out["profiles"] = kernel_profiles([(f, m, r) for f, m, r, _ in measured], refs, engines, test_x, mcfg.latency_batches)
    except Exception as e:  # noqa: BLE001  a profiler that fails costs the profile rows, not the table
        out["profiles"] = [{"error": one_line(f"{type(e).__name__}: {e}", 300)}]
    return rows, failures
