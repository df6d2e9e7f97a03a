"""A tiny search spec of the same shape as the real ones (for storage / worker / resume tests)."""
from __future__ import annotations

import time

from studies.common import SearchSpec

CALLS: list[dict] = []


def toy_spec(sleep: float = 0.0, fingerprint: str = "toy-v1") -> SearchSpec:
    def suggest(t):
        return {"weight_bits": {f"l{i}": t.suggest_categorical(f"w:l{i}", [2, 4, 8]) for i in range(3)}}

    def evaluate(cfg):
        CALLS.append(cfg)
        if sleep:
            time.sleep(sleep)
        b = list(cfg["weight_bits"].values())
        # more bits: more accurate and larger (a monotone trade-off, like the real objective)
        return {"accuracy": 1.0 - sum(2.0 ** -x for x in b) / 3, "size_bytes": float(100 * sum(b)), "params": 30.0}

    starts = [("uniform w8", {f"w:l{i}": 8 for i in range(3)}), ("uniform w2", {f"w:l{i}": 2 for i in range(3)})]
    return SearchSpec(kind="toy", suggest=suggest, evaluate=evaluate, starts=starts, fingerprint=fingerprint)
