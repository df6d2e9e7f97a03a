import pytest
import yaml

from compress.config import ConfigError, load_params, validate_params
from tests.conftest import ROOT


def test_repo_params_yaml_is_valid():
    p = load_params(ROOT / "params.yaml")
    assert p.data.source == "mnist" and p.data.val_size == 5000 and p.model.name == "lenet5"


@pytest.mark.parametrize("raw, needle", [
    ({"train": {"epochs": 0}}, "train.epochs = 0"),
    ({"train": {"epochs": "many"}}, "train.epochs = 'many'"),
    ({"train": {"epoch": 3}}, "unknown key 'train.epoch'"),
    ({"trian": {}}, "unknown key 'trian'"),
    ({"data": {"source": "imagenet"}}, "data.source = 'imagenet' is not allowed"),
    ({"model": {"name": "vgg"}}, "model.name = 'vgg' is invalid: unknown model"),
    ({"train": {"optimizer": "lion"}}, "train.optimizer = 'lion'"),
    ({"data": {"val_size": -1}}, "data.val_size = -1"),
    ({"fit": {"batch_size": 0}}, "fit.batch_size = 0"),
    ({"fit": {"optimzer": "adam"}}, "unknown key 'fit.optimzer'"),
    ({"data": {"out": "elsewhere"}}, "unknown key 'data.out'"),  # paths live in stages/pipeline.py, not params
    ({"recipes": {"r": {"model": "vgg", "steps": [{"step": "prune", "sparsity": 0.5}]}}}, "recipes.r.model = 'vgg' is unknown"),
    ({"recipes": {"r": {"model": "lenet300", "steps": [{"step": "encode"}]}}}, "recipes.r.steps[0].step = 'encode' is out of order"),
    ({"recipes": {"r": {"model": "lenet300", "steps": [{"step": "prune", "sparsity": 1.2}]}}}, "recipes.r.steps[0].sparsity"),
    ({"recipes": {"r": {"model": "lenet300", "steps": [{"step": "prune", "sparsity": 0.5}, {"step": "quantize", "bits": 12}]}}},
     "recipes.r.steps[1].bits = 12"),
    ({"recipes": {"r": {"model": "lenet300", "steps": [{"step": "squeeze"}]}}}, "recipes.r.steps[0].step = 'squeeze' is unknown"),
    ({"recipes": {"R 1": {"model": "lenet300", "steps": []}}}, "recipes.R 1: a recipe name must match"),
    ({"evaluate": {"runtimes": ["onnxruntime", "tvm"]}}, "unknown deploy engine 'tvm'; allowed: torch-eager"),
    ({"evaluate": {"runtimes": ["onnxruntime", "onnxruntime"]}}, "evaluate.runtimes"),
    ({"evaluate": {"max_repeats": 2, "min_repeats": 5}}, "evaluate.max_repeats"),
])
def test_bad_values_give_one_line_naming_the_key(raw, needle):
    with pytest.raises(ConfigError) as e:
        validate_params(raw)
    msg = str(e.value)
    assert needle in msg, msg
    assert "\n" not in msg


def test_val_size_larger_than_training_set_is_rejected_before_work():
    with pytest.raises(ConfigError, match=r"data.val_size = 70000 .*60000"):
        validate_params({"data": {"source": "mnist", "val_size": 70000}})


def test_load_params_reports_bad_yaml_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_params(tmp_path / "nope.yaml")
    bad = tmp_path / "p.yaml"
    bad.write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(bad)
    bad.write_text(yaml.safe_dump({"seed": -3}))
    with pytest.raises(ConfigError, match="seed = -3"):
        load_params(bad)


def test_unknown_nested_key_lists_the_allowed_nested_keys():
    from compress.config import all_sections

    if "obd" not in all_sections():
        pytest.skip("the obd family is not part of this checkout")
    with pytest.raises(ConfigError) as e:
        validate_params({"obd": {"hessian": {"tol": 1e-3}}})
    msg = str(e.value)
    assert "unknown key 'obd.hessian.tol' in obd.hessian; allowed keys: batch_size, batches, samples" in msg, msg


def test_tiny_e2e_params_are_valid():
    from tests.tiny_params import tiny_params

    validate_params(tiny_params(yaml.safe_load((ROOT / "params.yaml").read_text()), "sqlite:///x.db"))


@pytest.mark.parametrize("raw, needle", [
    ({"qat": {"calibration": "median"}}, "qat.calibration = 'median' is invalid: unknown calibration method 'median'; "
                                         "allowed: minmax, moving_average_minmax, percentile, mse, kl"),
    ({"qat": {"quantizer": "pact"}}, "qat.quantizer = 'pact' is invalid: unknown quantizer 'pact'; allowed: fixed, lsq"),
    ({"search": {"sampler": "grid"}}, "search.sampler = 'grid' is invalid: unknown sampler 'grid'; allowed: nsga2, tpe, random"),
    ({"lottery": {"model": "vgg"}}, "lottery.model = 'vgg' is invalid: unknown model 'vgg'; allowed: lenet300, lenet5"),
    ({"hawq": {"compare_allocators": ["ilp", "greedy"]}}, "unknown allocator 'greedy'; allowed: sensitivity, ilp"),
    ({"obd": {"negative": "zero"}}, "obd.negative = 'zero' is invalid: unknown rule 'zero'; allowed: posterior, clamp"),
])
def test_a_name_missing_from_its_registry_gives_the_same_one_line_everywhere(raw, needle):
    with pytest.raises(ConfigError) as e:
        validate_params(raw)
    assert needle in str(e.value) and "\n" not in str(e.value), str(e.value)
