"""params.yaml states only what differs from the typed defaults, every key is known and documented once."""
import copy
import typing

import yaml
from pydantic import BaseModel

from compress.config import FitConfig, all_sections, load_params, validate_params
from stages import pipeline
from tests.conftest import ROOT

RAW = yaml.safe_load((ROOT / "params.yaml").read_text())


def _leaves(d: dict, path=()):
    for k, v in d.items():
        if isinstance(v, dict) and v:
            yield from _leaves(v, path + (k,))
        elif not isinstance(v, dict):
            yield path + (k,), v


def _get(d, path):
    for k in path:
        d = d[k] if isinstance(d, dict) else getattr(d, k)
    return d


def test_params_yaml_is_valid():
    load_params(ROOT / "params.yaml")


def test_every_section_a_stage_reads_is_in_params_yaml():
    """DVC refuses a declared params key that is missing from params.yaml, so each section is written (maybe {})."""
    needed = {p.split(".")[0] for s in pipeline.STAGES.values() for p in s.params}
    assert needed <= set(RAW), sorted(needed - set(RAW))
    assert set(RAW) <= {"seed", *all_sections()}


def test_no_key_restates_its_default():
    """Removing any key from params.yaml must change the validated params: nothing is written twice."""
    full = validate_params(RAW).model_dump(mode="json")
    restated = []
    for path, value in _leaves({k: v for k, v in RAW.items() if isinstance(v, dict) and k != "recipes"}):
        less = copy.deepcopy(RAW)
        node = less
        for k in path[:-1]:
            node = node[k]
        del node[path[-1]]
        if _get(validate_params(less).model_dump(mode="json"), path) == _get(full, path):
            restated.append(".".join(map(str, path)))
    assert not restated, f"params.yaml restates typed defaults: {restated}"


def _dict_leaves(d: dict, path=()):
    for k, v in d.items():
        yield from (_dict_leaves(v, path + (k,)) if isinstance(v, dict) and v else [path + (k,)])


def test_no_recipe_step_restates_its_default():
    """The same rule inside each recipe: removing a key of a step (or of the baseline) changes the validated recipe."""
    from compress.recipes.engine import RecipeError, validate_recipe

    def dump(r):
        return [r.baseline.model_dump(mode="json")] + [s.model_dump(mode="json") for _, s in r.steps]

    restated = []
    for name, raw in RAW.get("recipes", {}).items():
        full = dump(validate_recipe(name, raw))
        parts = [("baseline",)] + [("steps", i) for i in range(len(raw["steps"]))]
        for part in parts:
            node = raw
            for k in part:
                node = node[k]
            for leaf in _dict_leaves(node):
                if leaf == ("step",):
                    continue
                less = copy.deepcopy(raw)
                n = less
                for k in (*part, *leaf[:-1]):
                    n = n[k]
                del n[leaf[-1]]
                try:
                    same = dump(validate_recipe(name, less)) == full
                except RecipeError:  # the key is required (e.g. a layer's bits)
                    same = False
                if same:
                    restated.append(f"recipes.{name}.{'.'.join(map(str, part + leaf))}")
    assert not restated, f"recipe keys restating their defaults: {restated}"


def _fields(model: type[BaseModel], prefix: str):
    for name, f in model.model_fields.items():
        key = f"{prefix}.{name}"
        yield key, f
        sub = next((t for t in (f.annotation, *typing.get_args(f.annotation)) if isinstance(t, type) and issubclass(t, BaseModel)), None)
        if sub is not None and not issubclass(sub, FitConfig):
            yield from _fields(sub, key)


def test_every_key_is_documented_once():
    """Each key's default and meaning live in its Field (docs/PARAMS.md is generated from them)."""
    undocumented = [k for name, m in all_sections().items() for k, f in _fields(m, name) if not f.description]
    assert not undocumented, undocumented


def test_fit_is_inherited_by_every_training_block():
    P = validate_params({"fit": {"batch_size": 64}, "hawq": {"finetune": {"lr": 1e-4}}})
    assert P.hawq.finetune.batch_size == 64 and P.hawq.finetune.lr == 1e-4
    assert P.train.batch_size == 64 and P.obd.retrain.batch_size == 64 and P.structured.reference.batch_size == 64
    assert validate_params({"fit": {"batch_size": 64}, "train": {"batch_size": 32}}).train.batch_size == 32


def test_an_inherited_bad_value_names_where_it_came_from():
    import pytest

    from compress.config import ConfigError

    with pytest.raises(ConfigError, match=r"^params.yaml: fit.lr = -1 is invalid"):
        validate_params({"fit": {"lr": -1}})
    with pytest.raises(ConfigError, match=r"binary.schedule .*inherited from fit.schedule"):
        validate_params({"fit": {"schedule": "onecycle"}})


def test_a_registered_pruning_score_is_accepted(monkeypatch):
    """Config validation reads the registry: a new criterion needs no config edit."""
    import pytest

    from compress.config import ConfigError
    from compress.prune import magnitude

    with pytest.raises(ConfigError, match="unknown pruning method 'taylor'"):
        validate_params({"prune": {"variants": {"t": {"method": "taylor"}}}})
    monkeypatch.setitem(magnitude.SCORES, "taylor", magnitude.SCORES["magnitude"])
    assert validate_params({"prune": {"variants": {"t": {"method": "taylor"}}}}).prune.variants["t"].method == "taylor"
