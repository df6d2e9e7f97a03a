import pytest

from compress.config import ConfigError, validate_params
from compress.quant.config import (
    CalibrateConfig,
    PTQConfig,
    check_ptq_against_calibrate,
    parse_tag,
)


@pytest.mark.parametrize("raw,needle", [
    ({"ptq": {"bits": ["w17a8"]}}, "params.yaml: ptq.bits = ['w17a8'] is invalid: weight bits 17"),
    ({"ptq": {"bits": ["w4a0"]}}, "ptq.bits = ['w4a0'] is invalid: activation bits 0"),
    ({"ptq": {"bits": ["int4"]}}, "not a bit-width tag"),
    ({"ptq": {"floats": ["fp4"]}}, "ptq.floats = ['fp4'] is invalid: unknown float format 'fp4'; allowed: fp16"),
    ({"ptq": {"rounding": "odd"}}, "ptq.rounding = 'odd' is not allowed"),
    ({"ptq": {"methods": ["avg"]}}, "ptq.methods = ['avg'] is invalid: unknown observer 'avg'; allowed: minmax"),
    ({"calibrate": {"methods": []}}, "calibrate.methods = [] is invalid"),
    ({"calibrate": {"act_bits": [17]}}, "calibrate.act_bits = [17] is invalid"),
    ({"calibrate": {"percentile": 30}}, "calibrate.percentile = 30"),
    ({"ptq": {"weight_granularity": "row"}}, "ptq.weight_granularity = 'row' is not allowed"),
])
def test_bad_values_are_one_line_errors(raw, needle):
    with pytest.raises(ConfigError) as e:
        validate_params(raw)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_defaults_and_tags():
    P = validate_params({})
    assert P.ptq.bits == ["w8a8", "w6a8", "w4a8", "w4a4", "w2a8"] and parse_tag("W4A8") == (4, 8)
    check_ptq_against_calibrate(P.ptq, P.calibrate)


def test_cross_section_checks():
    with pytest.raises(ValueError, match="ptq.methods = .* 'kl' is not in calibrate.methods"):
        check_ptq_against_calibrate(PTQConfig(methods=["kl"]), CalibrateConfig(methods=["minmax"]))
    with pytest.raises(ValueError, match="activation width 6 of 'w8a6' was not calibrated"):
        check_ptq_against_calibrate(PTQConfig(bits=["w8a6"]), CalibrateConfig())
    with pytest.raises(ValueError, match="ptq.pt2e_methods"):
        check_ptq_against_calibrate(PTQConfig(methods=["minmax"], pt2e_methods=["mse"]), CalibrateConfig())
