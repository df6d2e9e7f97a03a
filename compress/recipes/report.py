"""A recipe's outputs: its variant folder (artifact + manifest) and the trail figure.

The trail is Deep Compression's Table 1-3 read as a path: after every step the artifact's bytes
and the validation accuracy (pruning -> quantization -> coding).
"""
from __future__ import annotations

from pathlib import Path

from compress.recipes.engine import RecipeResult
from compress.variants import Form, Manifest, write_variant

ARTIFACT = "model.rcz"


def recipe_manifest(res: RecipeResult, *, variant: str, stage: str, dataset: str, seed: int) -> Manifest:
    """The variants-table entry of a recipe: runtime ``recipe-decoded`` on ``model.rcz``.

    ``avg_weight_bits`` is the mean code width of the kept weights (32 for float ones); ``extra``
    also holds the effective bits per original weight (8 x file bytes / all weights), the trail and
    the Monarch layout when there is one.
    """
    from compress.recipes.tensors import weight_counts

    kept, total = weight_counts(res.model)
    q = next((r for r in res.trail if r["step"] == "quantize"), None)
    code_bits = q["code_bits_mean"] if q is not None else 32.0
    n_floats = sum(p.numel() for n, p in res.model.named_parameters() if not n.endswith(("weight", "w1", "w2")))
    steps = " -> ".join(r["step"] for r in res.trail[1:])
    return Manifest(
        variant=variant, stage=stage, method="recipe", model=res.spec, dataset=dataset, seed=seed,
        avg_weight_bits=float(code_bits), act_bits=None, sparsity=float(res.summary["sparsity"]), params=int(kept + n_floats),
        deploy=Form(runtime="recipe-decoded", files=[ARTIFACT]),
        notes=f"recipe {res.name}: {steps}; {res.summary['ratio']}x smaller than the fp32 baseline",
        extra={"recipe": res.name, "bits_per_weight": round(8 * len(res.artifact) / total, 4), "weights": total,
               "kept_weights": kept, "baseline_bytes": res.summary["baseline_bytes"], "ratio": res.summary["ratio"],
               "monarch": res.monarch, "trail": res.trail})


def write_recipe_variant(folder: str | Path, res: RecipeResult, *, variant: str, stage: str, dataset: str, seed: int) -> Path:
    """Write ``model.rcz`` and ``manifest.json`` into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / ARTIFACT).write_bytes(res.artifact)
    return write_variant(folder, recipe_manifest(res, variant=variant, stage=stage, dataset=dataset, seed=seed))


__all__ = ["ARTIFACT", "recipe_manifest", "write_recipe_variant"]
