"""Recipe validation: every bad input is ONE line naming the recipe, the step index and the key."""
import pytest

from compress.recipes.engine import RecipeError, validate_recipe, validate_recipes
from compress.recipes.registry import STEPS

GOOD = {
    "model": "lenet300",
    "baseline": {"epochs": 1},
    "steps": [
        {"step": "prune", "sparsity": {"net.1": 0.9, "net.3": 0.8}, "schedule": "gradual"},
        {"step": "quantize", "method": "kmeans", "bits": {"net.*": 5}},
        {"step": "finetune", "epochs": 1, "lr": 1e-4},
        {"step": "encode", "coder": "lzma"},
    ],
}


def _with(steps=None, **top):
    raw = {**GOOD, **top}
    if steps is not None:
        raw["steps"] = steps
    return raw


def _error(raw, name="r1") -> str:
    with pytest.raises(RecipeError) as e:
        validate_recipe(name, raw)
    msg = str(e.value)
    assert "\n" not in msg, msg
    return msg


def test_good_recipe_validates_into_typed_steps():
    r = validate_recipe("r1", GOOD)
    assert [s.name for s, _ in r.steps] == ["prune", "quantize", "finetune", "encode"]
    assert r.steps[1][1].bits == {"net.*": 5} and r.baseline.epochs == 1
    assert set(STEPS) == {"monarch", "prune", "quantize", "finetune", "encode"}


@pytest.mark.parametrize("steps, expected", [
    # unknown step
    ([{"step": "distill"}], "recipes.r1.steps[0].step = 'distill' is unknown; allowed: monarch, prune, quantize"),
    # out of order: encode before quantize
    ([{"step": "encode"}, {"step": "quantize", "bits": 4}], "recipes.r1.steps[0].step = 'encode' is out of order: encode needs a quantize step before it"),
    # out of order: prune after quantize
    ([{"step": "quantize", "bits": 4}, {"step": "prune", "sparsity": 0.5}],
     "recipes.r1.steps[1].step = 'prune' is out of order: prune must come before quantize (steps[0])"),
    # nothing after encode
    ([{"step": "quantize", "bits": 4}, {"step": "encode"}, {"step": "finetune"}],
     "recipes.r1.steps[2].step = 'finetune' is out of order: nothing may follow encode (steps[1])"),
    # finetune first
    ([{"step": "finetune"}], "recipes.r1.steps[0].step = 'finetune' is out of order"),
    # bits out of range (one value, a per-layer map, search candidates)
    ([{"step": "quantize", "bits": 12}], "recipes.r1.steps[0].bits = 12 is invalid: 12 is out of range; allowed: integers from 1 to 8"),
    ([{"step": "quantize", "bits": {"net.1": 0}}], "recipes.r1.steps[0].bits = {'net.1': 0} is invalid: 0 is out of range"),
    ([{"step": "quantize", "search": {"candidates": [9, 4]}}], "recipes.r1.steps[0].search.candidates = [9, 4] is invalid"),
    # sparsity out of range
    ([{"step": "prune", "sparsity": 1.2}], "recipes.r1.steps[0].sparsity = 1.2 is invalid: 1.2 is out of range; allowed: a fraction in [0, 1)"),
    ([{"step": "prune", "sparsity": {"net.1": -0.1}}], "recipes.r1.steps[0].sparsity = {'net.1': -0.1} is invalid"),
    # unknown key, bad literal, unknown layer, two sources of bits
    ([{"step": "prune", "sparsity": 0.5, "sparsty": 0.5}], "recipes.r1.steps[0].sparsty: unknown key; allowed: method, scope, sparsity"),
    ([{"step": "prune", "sparsity": 0.5, "finetune": {"lrr": 1}}], "recipes.r1.steps[0].finetune.lrr: unknown key; allowed: epochs"),
    ([{"step": "prune", "sparsity": 0.5, "method": "random"}], "recipes.r1.steps[0].method = 'random' is invalid"),
    ([{"step": "prune", "sparsity": {"fc9": 0.5}}], "recipes.r1.steps[0].sparsity: 'fc9' matches no selected layer; allowed: net.1, net.3, net.5"),
    ([{"step": "quantize", "bits": 4, "layers": ["conv*"]}], "recipes.r1.steps[0].layers: 'conv*' matches no layer"),
    ([{"step": "quantize", "bits": 4, "search": {}}], "recipes.r1.steps[0].bits = 4 is invalid: give exactly one of bits, bits_from, search"),
    ([{"step": "quantize", "bits": 4}, {"step": "quantize", "bits": 3}], "recipes.r1.steps[1].step = 'quantize' is repeated"),
    ([{"step": "quantize", "method": "uniform", "bits": 1}], "recipes.r1.steps[0].bits = 1 is invalid: the uniform grid is symmetric and needs >= 2 bits"),
    ([{"step": "encode"}], "recipes.r1.steps[0].step = 'encode' is out of order"),
    ([{"step": "quantize", "bits": 4}, {"step": "encode", "coder": "zstd", "level": 30}], "recipes.r1.steps[1].level = 30 is invalid"),
    ([{"step": "monarch", "nblocks": 7}], "recipes.r1.steps[0].nblocks: 7 does not fit layer net.1"),
])
def test_bad_steps_are_one_line_naming_recipe_index_and_key(steps, expected):
    assert _error(_with(steps=steps)).startswith(expected)


def test_bad_model_and_top_level_keys():
    assert _error(_with(model="vgg")).startswith("recipes.r1.model = 'vgg' is unknown; allowed: lenet300, lenet5, lenet5-caffe")
    assert _error(_with(stepz=[])).startswith("recipes.r1.stepz: unknown key; allowed: model, model_kwargs, baseline, steps")
    assert _error(_with(steps=[])).startswith("recipes.r1.steps: must be a non-empty list")
    assert _error(_with(baseline={"epochs": 0})).startswith("recipes.r1.baseline.epochs = 0 is invalid")
    assert _error(_with(model_kwargs={"depth": 3})).startswith("recipes.r1.model_kwargs = {'depth': 3} is invalid")
    with pytest.raises(RecipeError, match=r"^recipes.b.steps\[0\].step = 'x' is unknown"):
        validate_recipes({"a": GOOD, "b": _with(steps=[{"step": "x"}])})


def test_layer_checks_follow_the_architecture_after_monarch():
    steps = [{"step": "monarch", "layers": ["net.1"]}, {"step": "prune", "sparsity": {"net.1": 0.5}}]
    # net.1 is a Monarch layer after step 0: the prune step cannot name it
    assert _error(_with(steps=steps)).startswith("recipes.r1.steps[1].sparsity: 'net.1' matches no selected layer")
    ok = [{"step": "monarch", "layers": ["net.1"]}, {"step": "quantize", "bits": {"net.*": 4}}]
    assert [s.name for s, _ in validate_recipe("r1", _with(steps=ok)).steps] == ["monarch", "quantize"]


def test_hawq_allocation_file_is_checked(tmp_path):
    import json

    f = tmp_path / "allocation.json"
    f.write_text(json.dumps({"allocations": [{"name": "hawq-2.5", "bits": {"net.1": 2, "net.3": 4, "net.5": 8}}]}))
    steps = [{"step": "quantize", "bits_from": str(f), "allocation": "hawq-2.5"}]
    validate_recipe("r1", _with(steps=steps))
    bad = [{"step": "quantize", "bits_from": str(f), "allocation": "hawq-9"}]
    assert _error(_with(steps=bad)).startswith("recipes.r1.steps[0].allocation: 'hawq-9' is not in")
    f.write_text(json.dumps({"weight_bits": {"net.1": 2}}))
    assert _error(_with(steps=steps[:1] and [{"step": "quantize", "bits_from": str(f)}])).startswith(
        "recipes.r1.steps[0].bits_from: ")


def test_default_and_paper_recipes_validate_and_caffe_recipes_share_a_baseline():
    import yaml

    from compress.recipes.engine import baseline_key
    from tests.conftest import ROOT

    presets = {"default": yaml.safe_load((ROOT / "params.yaml").read_text())["recipes"],
               "paper": yaml.safe_load((ROOT / "presets" / "paper.yaml").read_text())["recipes"]}
    a = validate_recipe("a", presets["default"]["lenet5-caffe"])
    b = validate_recipe("b", presets["paper"]["lenet5-caffe-100x"])
    assert baseline_key(a, 0) == baseline_key(b, 0) != baseline_key(a, 1)

    for preset in presets.values():
        for name, raw in preset.items():
            r = validate_recipe(name, raw)
            assert r.steps[-1][0].name == "encode"


def test_prune_step_methods_come_from_the_score_registry(monkeypatch, digits_prepared):
    """A newly registered score is accepted by name (and gets training batches when it asks for
    them); an unknown one is one line listing the registry."""
    import copy

    from compress.data import load_split
    from compress.prune import magnitude
    from compress.recipes.base import RecipeContext

    assert "'fancy' is unknown" in _error(_with(steps=[{"step": "prune", "sparsity": 0.5, "method": "fancy"}]))
    seen = []

    def fancy(model, names, data=None):
        seen.append(data)
        return magnitude.SCORES["magnitude"](model, names)

    monkeypatch.setitem(magnitude.SCORES, "fancy", fancy)
    fancy.needs_data = True
    r = validate_recipe("r1", _with(steps=[{"step": "prune", "sparsity": 0.5, "method": "fancy", "schedule": "oneshot",
                                            "finetune": {"max_iterations": 1, "batch_size": 32}}]))
    train, val = load_split(digits_prepared, "train"), load_split(digits_prepared, "val")
    from compress.recipes.engine import train_baseline

    base, _ = train_baseline(validate_recipe("b", _with(baseline={"epochs": 1, "max_iterations": 2})), train, val, seed=0)
    ctx = RecipeContext("r1", copy.deepcopy(base), r.spec(), train, val, seed=0)
    step, s = r.steps[0]
    step.run(ctx, s, 1)
    assert seen and seen[0] is not None and len(seen[0]) == s.score_batches  # training batches were passed
