"""A params.yaml shrunk to run every stage in seconds on a CPU (used by the end-to-end test).

Each method family adds the overrides that make its stage tiny here.  Nested sections are
merged key by key; a value wrapped in ``Replace`` replaces the whole mapping.
"""
from __future__ import annotations

import copy


class Replace(dict):
    """Override that replaces a mapping instead of merging into it."""


_FT = {"epochs": 1, "max_iterations": 8}
_HESS = {"batch_size": 64, "batches": 1, "samples": 2}

TINY: dict[str, dict] = {
    "data": {"source": "digits", "val_size": 200, "calib_size": 128},
    "train": {"epochs": 1, "batch_size": 64, "compiled_variant": False, "augment_shift": 0},
    "evaluate": {"warmup": 1, "min_repeats": 3, "max_repeats": 3, "budget_s": 0.001},
    "structured": {"reference": _FT, "finetune": _FT},
    "calibrate": {"methods": ["minmax", "percentile", "mse"], "bins": 256},
    "ptq": {"bits": ["w8a8", "w4a8"], "methods": ["minmax", "mse"], "floats": ["fp16", "fp8_e4m3"], "pt2e_methods": [],
            "val_size": 0},
    "qat": {"bits": ["w8a8", "w4a4"], "epochs": 1, "max_iterations": 8},
    "binary": {"modes": ["det", "stoch"], "seeds": [0], "fp32_seeds": [], "hidden": [64], "epochs": 1, "max_iterations": 8},
    "sr": {"steps": 20, "sr_runs": 3, "train": {"enabled": False}},
    "prune": {"finetune": _FT, "variants": Replace({"mag-global-90": {"method": "magnitude", "scope": "global", "sparsity": 0.9},
                                                    "struct-l1-50": {"method": "structured", "sparsity": 0.5, "norm": "l1"}})},
    "lottery": {"seeds": [0], "target_remaining": 0.6, "iterations": 16, "eval_every": 8, "patience": 8},
    "hawq": {"hessian": {**_HESS, "max_iters": 8}, "budgets_avg_bits": [3.0], "uniform_bits": [3], "seeds": [0], "finetune": _FT, "landscape_points": 5},
    "obd": {"hessian": _HESS, "rounds": 1, "retrain": _FT, "curve_points": 4, "loss_samples": 300, "compare_hutchinson": False},
    "recipes": Replace({
        "tiny-mlp": {"model": "mlp", "model_kwargs": {"hidden": [32]}, "baseline": {"epochs": 1, "augment_shift": 0},
                     "steps": [{"step": "prune", "sparsity": 0.8, "frequency": 2, "finetune": {"max_iterations": 8}},
                               {"step": "quantize", "bits": 4}, {"step": "encode"}]},
        "tiny-lenet5": {"model": "lenet5", "baseline": {"source": "train"},
                        "steps": [{"step": "prune", "sparsity": 0.5, "schedule": "oneshot", "finetune": {"max_iterations": 4}},
                                  {"step": "quantize", "bits": 6, "snap_int8": True}, {"step": "encode", "coder": "zstd"}]}}),
    "search": {"n_trials": 3, "population_size": 2, "eval_size": 200, "latency_repeats": 1, "export_front": 1},
}


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, Replace):
            out[k] = dict(v)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def tiny_params(base: dict, tracking_uri: str) -> dict:
    present = {k: v for k, v in TINY.items() if k in base}  # sections of families not in this checkout are skipped
    out = _merge(base, present)
    out["tracking"] = {**out.get("tracking", {}), "uri": tracking_uri}
    return out
