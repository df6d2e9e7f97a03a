"""A params.yaml shrunk to run every stage in seconds on a CPU (used by the end-to-end test).

Each method family adds the overrides that make its stage tiny here.
"""
from __future__ import annotations

TINY: dict[str, dict] = {
    "data": {"source": "digits", "val_size": 200, "calib_size": 128},
    "train": {"epochs": 1, "batch_size": 64, "compiled_variant": False, "augment_shift": 0},
    "evaluate": {"warmup": 1, "repeats": 3},
    "prune": {"finetune": {"max_iterations": 3}},
    "lottery": {"iterations": 10, "eval_every": 5, "seeds": [0, 1], "target_remaining": 0.6},
}


def tiny_params(base: dict, tracking_uri: str) -> dict:
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in base.items()}
    for section, over in TINY.items():
        if section in out:
            out[section].update(over)
    out["tracking"] = {**out.get("tracking", {}), "uri": tracking_uri}
    return out
