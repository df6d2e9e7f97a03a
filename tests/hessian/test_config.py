"""Bad hawq/obd params are one-line errors naming the params.yaml key, raised before any work."""
import pytest

from compress.config import ConfigError, validate_params


@pytest.mark.parametrize("raw, key, words", [
    ({"hawq": {"hessian": {"tol": 0}}}, "hawq.hessian.tol = 0", "must be > 0"),
    ({"hawq": {"hessian": {"tol": -1e-3}}}, "hawq.hessian.tol = -0.001", "must be > 0"),
    ({"obd": {"hessian": {"samples": 0}}}, "obd.hessian.samples = 0", "greater than or equal to 1"),
    ({"hawq": {"budgets_avg_bits": [1.5, 3]}}, "hawq.budgets_avg_bits = [1.5, 3]", "below 2 bits, the smallest of hawq.bit_candidates"),
    ({"hawq": {"bit_candidates": [3, 4], "budgets_avg_bits": [2.5]}}, "hawq.budgets_avg_bits = [2.5]", "below 3 bits"),
    ({"hawq": {"blocks": "rows"}}, "hawq.blocks", "layer"),
    ({"hawq": {"blocks": {"a": []}}}, "hawq.blocks", "non-empty list"),
    ({"hawq": {"bit_candidates": [2, 9]}}, "hawq.bit_candidates = [2, 9]", "1..8"),
    ({"hawq": {"seeds": []}}, "hawq.seeds = []", "non-empty"),
    ({"obd": {"prune_fraction": 1.0}}, "obd.prune_fraction = 1.0", "less than 1"),
    ({"obd": {"diag": "fisher"}}, "obd.diag", "ggn"),
    ({"hawq": {"finetune": {"max_iterations": 0}}}, "hawq.finetune.max_iterations = 0", "greater than or equal to 1"),
])
def test_bad_values_are_one_line_errors_naming_the_key(raw, key, words):
    with pytest.raises(ConfigError) as e:
        validate_params(raw)
    msg = str(e.value)
    assert "\n" not in msg and key in msg and words in msg, msg


def test_obd_has_no_power_iteration_knobs():
    with pytest.raises(ConfigError, match="unknown key 'obd.hessian.tol'"):
        validate_params({"obd": {"hessian": {"tol": 1e-3}}})


def test_defaults_are_valid():
    P = validate_params({})
    assert P.hawq.hessian.tol == 1e-3 and P.hawq.bit_candidates == [2, 3, 4, 6, 8] and P.obd.diag == "ggn"
