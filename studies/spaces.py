"""Search spaces: per-layer categorical choices, uniform starting points, HAWQ's allocation.

Optuna parameter names: ``w:<layer>`` weight bits, ``a:<layer>`` activation bits (None =
float), ``s:<layer>`` sparsity level.  A config is what ``studies.objectives`` evaluates.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import optuna


def suggest_bits(trial: optuna.Trial, layers: list[str], wbits: list[int], abits: list[int | None]) -> dict[str, Any]:
    return {"weight_bits": {n: trial.suggest_categorical(f"w:{n}", wbits) for n in layers},
            "act_bits": {n: trial.suggest_categorical(f"a:{n}", abits) for n in layers}}


def suggest_sparsity(trial: optuna.Trial, layers: list[str], levels: list[float]) -> dict[str, Any]:
    return {"sparsity": {n: trial.suggest_categorical(f"s:{n}", levels) for n in layers}}


def bits_params(wb: dict[str, int], ab: dict[str, int | None]) -> dict[str, Any]:
    return {**{f"w:{n}": b for n, b in wb.items()}, **{f"a:{n}": b for n, b in ab.items()}}


def sparsity_params(levels: dict[str, float]) -> dict[str, Any]:
    return {f"s:{n}": s for n, s in levels.items()}


def default_act(abits: list[int | None]) -> int | None:
    """The activation width of the uniform starts: the widest integer candidate (or float)."""
    ints = [b for b in abits if b is not None]
    return max(ints) if ints else None


def mlflow_params(cfg: dict[str, Any]) -> dict[str, Any]:
    """Flat MLflow params of a config: ``wbits.<layer>``, ``abits.<layer>``, ``sparsity.<layer>``."""
    out = {}
    for key, prefix in (("weight_bits", "wbits"), ("act_bits", "abits"), ("sparsity", "sparsity")):
        for n, v in cfg.get(key, {}).items():
            out[f"{prefix}.{n}"] = v
    return out


def hawq_file(S) -> str | None:
    """The hawq stage's allocations file, when ``search.use_hawq`` asks for its trials to be enqueued."""
    from stages.pipeline import HAWQ_ALLOCATION

    return HAWQ_ALLOCATION if S.use_hawq else None


def read_hawq(path: str | Path | None, layers: list[str], wbits: list[int]) -> list[tuple[str, dict[str, int]]]:
    """HAWQ allocations found in ``path`` as (label, {layer: bits}); none if the file is absent.

    Accepted forms: ``{"weight_bits": {layer: b}}``, ``{"allocation": {...}}``, a bare
    ``{layer: b}``, or ``{"allocations": [{"name"/"budget": ..., "weight_bits"/"bits": {...}}, ...]}``.
    Allocations using a width outside the candidate set cannot be enqueued and are skipped
    with a message (the search can only evaluate its own categories).
    """
    if not path or not Path(path).exists():
        return []
    data = json.loads(Path(path).read_text())
    found: list[tuple[str, dict]] = []
    if isinstance(data, dict) and isinstance(data.get("allocations"), list):
        for i, a in enumerate(data["allocations"]):
            bits = a.get("weight_bits") or a.get("bits") or a.get("allocation")
            label = a.get("name") or (f"budget {a['budget']}" if "budget" in a else str(i))
            found.append((label if str(label).startswith("hawq") else f"hawq {label}", bits))
    elif isinstance(data, dict):
        bits = data.get("weight_bits") or data.get("allocation") or data.get("bits") or data
        found.append(("hawq", bits))
    out = []
    for label, bits in found:
        if not isinstance(bits, dict) or set(bits) != set(layers):
            print(f"search: {path}: {label} does not allocate exactly the layers {layers}; not enqueued", file=sys.stderr)
            continue
        bad = {n: b for n, b in bits.items() if b not in wbits}
        if bad:
            print(f"search: {path}: {label} uses widths {bad} outside search.weight_bits {wbits}; not enqueued",
                  file=sys.stderr)
            continue
        out.append((label, {n: int(bits[n]) for n in layers}))
    return out
