"""The default recipes (one per model) and the ``paper`` preset, as params.yaml would hold them.

Chosen on the validation split only (benchmarks/bench_recipes.py measures them on test; the
experiment log is in the branch's report).  Pattern, after Deep Compression (Han et al. 2016):
gradual magnitude pruning folded into one fine-tuning run with layer-wise rates (cubic schedule,
Zhu & Gupta 2017) → per-layer k-means weight sharing (linear init) → a short centroid fine-tune →
relative indices + codes entropy-coded with LZMA, float16 biases.
"""
from __future__ import annotations

_CAFFE_BASELINE = {"epochs": 4, "lr": 2e-3, "schedule": "onecycle", "augment_shift": 2}
_SHARE_FT = {"step": "finetune", "epochs": 1, "lr": 3e-4, "augment_shift": 2}
_ENCODE = {"step": "encode", "coder": "lzma", "floats": "float16"}

DEFAULT: dict[str, dict] = {
    # LeNet-5 (Caffe), 431K weights: 94 % of the weights pruned (fc1 95 %), 5-6 bit codes
    "lenet5-caffe": {
        "model": "lenet5-caffe",
        "baseline": _CAFFE_BASELINE,
        "steps": [
            {"step": "prune", "method": "magnitude", "scope": "layer",
             "sparsity": {"conv1": 0.3, "conv2": 0.85, "fc1": 0.95, "fc2": 0.8},
             "schedule": "gradual", "end": 0.5, "frequency": 50,
             "finetune": {"epochs": 4, "lr": 1e-3, "augment_shift": 2}},
            {"step": "quantize", "method": "kmeans", "bits": {"conv1": 6, "conv2": 5, "fc1": 5, "fc2": 5}, "snap_int8": True},
            _SHARE_FT,
            _ENCODE,
        ],
    },
    # the suite's LeNet-5 (61.7K weights), starting from the train stage's baseline (models/baseline)
    "lenet5": {
        "model": "lenet5",
        "baseline": {"path": "models/baseline"},
        "steps": [
            {"step": "prune", "method": "magnitude", "scope": "layer",
             "sparsity": {"conv1": 0.2, "conv2": 0.6, "fc1": 0.92, "fc2": 0.85, "fc3": 0.5},
             "schedule": "gradual", "end": 0.6, "frequency": 50,
             "finetune": {"epochs": 5, "lr": 1e-3, "augment_shift": 2}},
            {"step": "quantize", "method": "kmeans", "bits": {"conv*": 6, "fc1": 4, "fc2": 5, "fc3": 5}, "snap_int8": True},
            _SHARE_FT,
            _ENCODE,
        ],
    },
    # LeNet-300-100, 267K weights: 4.5 % / 8 % / 25 % kept (Deep Compression: 8 / 9 / 26 %), 5-6 bit codes
    "lenet300": {
        "model": "lenet300",
        "baseline": {"epochs": 8, "lr": 2e-3, "schedule": "onecycle", "augment_shift": 2},
        "steps": [
            {"step": "prune", "method": "magnitude", "scope": "layer",
             "sparsity": {"net.1": 0.955, "net.3": 0.92, "net.5": 0.75},
             "schedule": "gradual", "end": 0.5, "frequency": 50,
             "finetune": {"epochs": 12, "lr": 1e-3, "augment_shift": 1}},
            {"step": "quantize", "method": "kmeans", "bits": {"net.1": 5, "net.3": 5, "net.5": 6}, "snap_int8": True},
            {"step": "finetune", "epochs": 2, "lr": 3e-4, "augment_shift": 1},
            _ENCODE,
        ],
    },
}

# Beyond the paper on LeNet-5 (Caffe): fc1 98 % pruned, 4-bit fc1 codes (~100x); same cost as the default
BEYOND: dict[str, dict] = {
    "lenet5-caffe-100x": {
        "model": "lenet5-caffe",
        "baseline": _CAFFE_BASELINE,
        "steps": [
            {"step": "prune", "method": "magnitude", "scope": "layer",
             "sparsity": {"conv1": 0.3, "conv2": 0.85, "fc1": 0.98, "fc2": 0.85},
             "schedule": "gradual", "end": 0.5, "frequency": 50,
             "finetune": {"epochs": 4, "lr": 1e-3, "augment_shift": 2}},
            {"step": "quantize", "method": "kmeans", "bits": {"conv1": 6, "conv2": 5, "fc1": 4, "fc2": 5}, "snap_int8": True},
            _SHARE_FT,
            _ENCODE,
        ],
    },
}

PRESETS: dict[str, dict[str, dict]] = {"default": DEFAULT, "beyond": BEYOND}

__all__ = ["DEFAULT", "BEYOND", "PRESETS"]
