"""The pipeline, declared once: every path a stage reads or writes, its params sections, metrics and plots.

Stage scripts import their paths from here; ``dvc.yaml`` is generated from here by :mod:`stages.generate`, with
each stage's code dependencies found by reading the imports of its script, so an edit to any module a stage
uses reruns that stage and no other:

    python -m stages.generate            # rewrite dvc.yaml
    python -m stages.generate --check    # exit 1 (and say what differs) when dvc.yaml is stale
"""
from __future__ import annotations

from dataclasses import dataclass, field

# --------------------------------------------------------------------------- files between stages
PREPARED = "data/prepared"  # prepare -> every stage: {train,val,calib,test}.pt, meta.json
BASELINE = "models/baseline"  # train -> model.safetensors, w0.safetensors, spec.json
RANGES = "calibration/ranges.json"  # calibrate -> ptq, qat, search
HAWQ_ALLOCATION = "hawq/allocation.json"  # hawq -> search (enqueued trials)
SEARCH_TRIALS = "search/trials.csv"  # search -> report
SEARCH_FIGURES = "search/figures"
VARIANTS_CSV = "reports/variants.csv"  # evaluate -> report: the variants table
PARETO_CSV = "reports/pareto.csv"
REPORT_MD = "reports/report.md"
FIGURES = "reports/figures"
VARIANTS_ROOT = "variants"
RECIPE_METRICS = "metrics/recipes"  # recipes@<name> -> <name>.json (report: ratios, accuracies, wall_seconds)
RECIPE_PLOTS = "plots/recipes"  # recipes@<name> -> <name>/trail.csv (report: trail tables and figure)


def variants(stage: str) -> str:
    """``variants/<stage>``: the variant folders a stage writes (evaluate reads them all)."""
    return f"{VARIANTS_ROOT}/{stage}"


def metrics(stage: str) -> str:
    return f"metrics/{stage}.json"


def plots(stage: str) -> str:
    return f"plots/{stage}"


def reports(stage: str) -> str:
    return f"reports/{stage}"


# --------------------------------------------------------------------------- stages
@dataclass
class Out:
    path: str
    cache: bool = True  # False: git keeps it (small files people read), DVC only tracks it


@dataclass
class Plot:
    path: str
    x: str | None = None
    y: str | None = None
    template: str | None = None

    def props(self) -> dict:
        return {k: v for k, v in (("template", self.template), ("x", self.x), ("y", self.y)) if v is not None}


@dataclass
class Stage:
    params: list[str]  # params.yaml sections / keys the stage reads (every one must exist in params.yaml)
    deps: list[str] = field(default_factory=list)  # data the stage reads (code deps are found from its imports)
    outs: list[Out] = field(default_factory=list)
    metrics: list[str] = field(default_factory=list)
    plots: list[Plot] = field(default_factory=list)
    foreach: str | None = None  # a params.yaml mapping: one stage per item (`<stage>@<key>`); paths use ${key}


ITEM = "${key}"  # the foreach item's name in a path (DVC's template)


STAGES: dict[str, Stage] = {
    "prepare": Stage(["seed", "data"], outs=[Out(PREPARED)], metrics=[metrics("prepare")]),
    "train": Stage(["seed", "model", "fit", "train"], [PREPARED], [Out(BASELINE), Out(variants("train"))],
                   [metrics("train")], [Plot("plots/train/history.csv", "iteration", "val_acc")]),
    "structured": Stage(["seed", "fit", "train", "structured"], [PREPARED, BASELINE], [Out(variants("structured"))],
                        [metrics("structured")], [Plot("plots/structured/history.csv", "step", "val_acc")]),
    "calibrate": Stage(["seed", "calibrate"], [PREPARED, BASELINE], [Out(RANGES)], [metrics("calibrate")],
                       [Plot("plots/calibrate/ranges.csv")]),
    "ptq": Stage(["seed", "calibrate", "ptq"], [RANGES, PREPARED, BASELINE], [Out(variants("ptq"))], [metrics("ptq")],
                 [Plot("plots/ptq/val_accuracy.csv", "val_acc_sim", "variant", "bar_horizontal")]),
    "qat": Stage(["seed", "fit", "calibrate", "qat"], [RANGES, PREPARED, BASELINE], [Out(variants("qat"))],
                 [metrics("qat")], [Plot("plots/qat/curves.csv", "iteration", "val_acc")]),
    "binary": Stage(["fit", "binary"], [PREPARED], [Out(variants("binary"))], [metrics("binary")],
                    [Plot("plots/binary/curves.csv", "epoch", "val_error"),
                     Plot("plots/binary/paper_table.csv", "test_error_pct", "method", "bar_horizontal"),
                     Plot("plots/binary/paper_comparison.png")]),
    "sr": Stage(["seed", "sr"], [PREPARED], metrics=[metrics("sr")],
                plots=[Plot("plots/sr/stagnation.csv", "step", "rn"),
                       Plot("plots/sr/stagnation.png")]),
    "prune": Stage(["seed", "fit", "prune"], [PREPARED, BASELINE], [Out(variants("prune"))], [metrics("prune")]),
    "lottery": Stage(["lottery"], [PREPARED], [Out(variants("lottery"))], [metrics("lottery")],
                     [Plot("plots/lottery/summary.csv", "remaining_pct", "test_acc_mean"),
                      Plot("plots/lottery/rounds.csv"), Plot("plots/lottery/lottery.png")]),
    "hawq": Stage(["seed", "fit", "hawq"], [PREPARED, BASELINE],
                  [Out(variants("hawq")), Out(HAWQ_ALLOCATION, cache=False), Out(reports("hawq"), cache=False)],
                  [metrics("hawq")],
                  [Plot("plots/hawq/eigenvalues.csv", "lambda", "block", "bar_horizontal"),
                   Plot("plots/hawq/landscape.csv", "eps", "loss"),
                   Plot("plots/hawq/comparison.csv", "avg_bits", "val_acc", "scatter")]),
    "obd": Stage(["seed", "fit", "obd"], [PREPARED, BASELINE], [Out(variants("obd")), Out(reports("obd"), cache=False)],
                 [metrics("obd")], [Plot("plots/obd/curve.csv", "removed", "train_loss"),
                                    Plot("plots/obd/rounds.csv", "removed_total", "loss_retrained")]),
    "search": Stage(["seed", "search"], [PREPARED, BASELINE, RANGES, HAWQ_ALLOCATION],
                    [Out(SEARCH_TRIALS, cache=False), Out(SEARCH_FIGURES, cache=False), Out(variants("search"))],
                    [metrics("search")], [Plot("plots/search/trials.csv", "size_bytes", "accuracy", "scatter")]),
    "recipes": Stage(["seed", f"recipes.{ITEM}"], [PREPARED, BASELINE],
                     [Out(f"{variants('recipes')}/recipe-{ITEM}"), Out(f"{variants('recipes')}/recipe-{ITEM}-fp32")],
                     [f"{RECIPE_METRICS}/{ITEM}.json"], [Plot(f"{RECIPE_PLOTS}/{ITEM}/trail.csv", "index", "val_acc")],
                     foreach="recipes"),
    "evaluate": Stage(["evaluate"], [PREPARED], [Out(VARIANTS_CSV, cache=False)],
                      [metrics("summary"), metrics("latency")],
                      [Plot("plots/evaluate/variants.csv", "size_bytes", "accuracy", "scatter")]),
    "report": Stage(["report"], [VARIANTS_CSV, SEARCH_TRIALS, SEARCH_FIGURES, metrics("search"), metrics("summary"),
                                 metrics("prepare")],
                    [Out(REPORT_MD, cache=False), Out(PARETO_CSV, cache=False), Out(FIGURES, cache=False)]),
}
# evaluate measures every variant folder (a foreach stage's items write into its variants/<stage> folder)
STAGES["evaluate"].deps += list(dict.fromkeys(variants(n) if s.foreach else o.path for n, s in STAGES.items() for o in s.outs
                                              if o.path.startswith(VARIANTS_ROOT + "/")))
# the report also reads every stage's metrics (claims, wall_seconds), the recipe trails and summaries, HAWQ's table
STAGES["report"].deps += [m for n, s in STAGES.items() if not s.foreach and n != "report" for m in s.metrics
                          if m not in STAGES["report"].deps] + [reports("hawq"), RECIPE_PLOTS, RECIPE_METRICS]

# Figures for `dvc plots show` beyond each stage's own plots.
TOP_PLOTS: list[dict] = [
    {"training-loss": {"template": "linear", "x": "iteration", "y": {"plots/train/history.csv": ["train_loss", "val_loss"]}}},
    {"pareto-accuracy-vs-size": {"template": "scatter", "x": "size_bytes", "y": {PARETO_CSV: "accuracy"}}},
    {"pareto-accuracy-vs-latency-b1": {"template": "scatter", "x": "latency_ms_b1", "y": {PARETO_CSV: "accuracy"}}},
    {"search-trials": {"template": "scatter", "x": "size_bytes", "y": {"plots/search/trials.csv": "accuracy"}}},
    f"{FIGURES}/acc_vs_size.png", f"{FIGURES}/acc_vs_latency.png", f"{FIGURES}/bits_heatmap.png",
]
