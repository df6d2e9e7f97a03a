"""recipes: one compression recipe (a ``foreach`` item of params.yaml ``recipes``) -> variants/recipes/recipe-<name>.

A recipe chains steps of the library on one model (prune -> quantize / trained weight sharing -> finetune ->
encode, and monarch): its own fp32 baseline is trained first (or the train stage's, ``baseline.source: train``),
then every step runs and reports a trail row (artifact bytes, validation accuracy, seconds), as in Deep
Compression's tables. Writes the final artifact (it loads back; its bytes are size_bytes), the dense fp32
baseline it started from as variant recipe-<name>-fp32 (evaluate measures its test accuracy: the reference
of the recipe's accuracy and size targets; with ``baseline.source: train`` the train stage's weights), the trail
(plots/recipes/<name>/trail.csv) and metrics/recipes/<name>.json. Every recipe is validated before any training.

    python -m stages.recipes <name> [--params params.yaml]
"""
from __future__ import annotations

from compress.recipes.engine import (
    RecipeError,
    run_recipe,
    train_baseline,
    validate_recipes,
)
from compress.recipes.report import write_recipe_variant
from compress.tables import write_csv
from compress.train import seed_everything
from compress.variants import write_fp32_variant
from stages.common import Stage
from stages.pipeline import BASELINE


def main() -> None:
    st = Stage("recipes", __doc__)
    P, meta, name = st.P, st.meta, st.item
    if name not in P.recipes.root:
        st.die(f"recipes: no recipe {name!r} in {st.args.params}; recipes: {', '.join(P.recipes.root) or 'none'}")
    try:  # every recipe, against the dataset actually used, before any training
        recipe = validate_recipes(P.recipes.root, meta["input_shape"], meta["num_classes"])[name]
    except RecipeError as e:
        st.die(f"{st.args.params}: {e}")
    seed_everything(P.seed)
    train, val = st.split("train", "val")
    with st.run(recipe=name) as mlf:
        base, info = train_baseline(recipe, train, val, seed=P.seed, input_shape=meta["input_shape"], num_classes=meta["num_classes"],
                                    trained=BASELINE, on_eval=lambda r: mlf.log_metrics(
                                        {f"baseline_{k}": r[k] for k in ("val_loss", "val_acc")}, step=r["iteration"]))
        res = run_recipe(recipe, base, train, val, seed=P.seed, baseline_seconds=info["seconds"], input_shape=meta["input_shape"],
                         num_classes=meta["num_classes"], on_step=lambda r: mlf.log_metrics(
                             {k: r[k] for k in ("size_bytes", "ratio", "val_acc", "seconds")}, step=r["index"]))
        write_recipe_variant(st.item_out(f"recipe-{name}"), res, variant=f"recipe-{name}", stage="recipes",
                             dataset=meta["dataset"], seed=P.seed)
        origin = "trained by this stage" if info["source"] == "trained" else f"the train stage's {info['source']}"
        write_fp32_variant(st.item_out(f"recipe-{name}-fp32"), base, variant=f"recipe-{name}-fp32", stage="recipes",
                           method="baseline", spec=res.spec, dataset=meta["dataset"], seed=P.seed,
                           notes=f"dense fp32 baseline of recipe {name} ({origin}): the reference of its targets")
    write_csv(st.plot("trail.csv"), res.trail)
    st.write_metrics({"recipe": name, "baseline": info["source"], **res.summary})
    print(f"recipes: {name}: {res.summary['baseline_bytes']:,} -> {res.summary['size_bytes']:,} bytes "
          f"({res.summary['ratio']}x), val acc {res.summary['baseline_val_acc']:.4f} -> {res.summary['val_acc']:.4f}")


if __name__ == "__main__":
    main()
