"""The measurement API of the evaluate stage: per-runtime accuracy (deterministic), adaptive
latency, the fastest runtime, fp32 references and speed-ups, bad input in one line."""
import time

import pytest
import torch

from compress.checkpoint import save_state_dict
from compress.deploy.measure import MeasureConfig, adaptive_latency, evaluate_deployed, measure_variant, speedups, variant_rows
from compress.deploy.measure import arch_key, is_fp32_reference
from compress.models import MLP
from compress.quant.observers import calibrate
from compress.quant.ptq import build_int_sim, int_sim_cfg, int_specs, save_packed_model, write_sim
from compress.variants import Form, Manifest, model_spec, write_variant

SPEC = model_spec("mlp", {"hidden": [32]}, [1, 8, 8], 10)
FAST = MeasureConfig(batch_size=64, latency_batches=(1, 64), warmup=1, min_repeats=3, max_repeats=20, budget_s=0.005)


@pytest.fixture(scope="module")
def variants(tmp_path_factory):
    """A tiny fp32 baseline and its W4A8 packed variant (with its sim form) on 8x8 inputs."""
    root = tmp_path_factory.mktemp("variants")
    torch.manual_seed(0)
    m = MLP((1, 8, 8), 10, hidden=(32,)).eval()
    x = torch.randn(300, 1, 8, 8)
    y = m(x).argmax(1).detach()
    y[::7] = (y[::7] + 1) % 10  # some errors, so accuracy is not trivially 1
    base = dict(stage="t", method="t", model=SPEC, dataset="synthetic", seed=0, act_bits=None, sparsity=0.0, params=1)
    d0 = root / "a" / "fp32"
    save_state_dict(m, d0 / "model.safetensors")
    write_variant(d0, Manifest(variant="fp32", avg_weight_bits=32.0, deploy=Form("torch-eager", ["model.safetensors"]), **base))
    ranges = calibrate(m, x[:64], ["minmax"])["minmax"]
    ws, as_ = int_specs(4, 8)
    d1 = root / "b" / "w4a8"
    d1.mkdir(parents=True)
    save_packed_model(build_int_sim(m, 4, 8, ranges, ws, as_), d1 / "model.cspk")
    sim = write_sim(d1, m, int_sim_cfg(4, 8, ranges, ws, as_))
    write_variant(d1, Manifest(variant="w4a8", avg_weight_bits=4.0, deploy=Form("packed", ["model.cspk"]), sim=sim,
                               **{**base, "act_bits": 8}))
    from compress.variants import discover

    return discover(root), x, y


def test_adaptive_latency_stops_on_budget_with_min_repeats():
    calls = []

    def slow(x):
        calls.append(1)
        time.sleep(0.002)
        return x

    t0 = time.perf_counter()
    st = adaptive_latency(slow, torch.zeros(1), warmup=2, min_repeats=5, max_repeats=1000, budget_s=0.02, rel_tol=0.5)
    spent = time.perf_counter() - t0
    assert st["repeats"] >= 5 and len(calls) == st["repeats"] + 2
    assert st["median_ms"] >= 2.0 and st["p10_ms"] <= st["median_ms"] <= st["p90_ms"]
    assert spent < 4 * 0.02 + 0.05  # hard stop at 4 x budget (+ warm-up)
    st = adaptive_latency(slow, torch.zeros(1), warmup=0, min_repeats=3, max_repeats=3, budget_s=10.0)
    assert st["repeats"] == 3  # max_repeats caps a large budget


def test_measure_variant_per_runtime_accuracy_is_deterministic(variants):
    found, x, y = variants
    folder, man = next((f, m) for f, m in found if m.variant == "w4a8")
    runtimes = ["torch-eager", "onnxruntime"]
    a = measure_variant(folder, man, x, y, runtimes=runtimes, cfg=FAST)
    b = measure_variant(folder, man, x, y, runtimes=runtimes, cfg=FAST)
    assert set(a["runtimes"]) == {"torch-eager", "onnxruntime"}
    for rt in a["runtimes"]:
        assert a["runtimes"][rt]["accuracy"] == b["runtimes"][rt]["accuracy"]
        assert a["runtimes"][rt]["latency_ms_b1"] > 0 and a["runtimes"][rt]["latency_ms_b64"] > 0
    # the batch-64 latency comes from the accuracy pass's timed calls (300 images / 64 -> 5 calls, 1 warm-up)
    assert a["runtimes"]["onnxruntime"]["latency"][64]["source"] == "accuracy pass"
    assert a["runtimes"]["onnxruntime"]["precision"] == "int8"
    assert a["runtimes"]["onnxruntime"]["ops"]["int8"] == {"QGemm": 2}
    assert a["fastest"]["b1"] in a["runtimes"] and a["accuracy_sim"] == a["runtimes"]["torch-eager"]["accuracy"]
    assert "bit-identical" in a["accuracy_sim_source"]  # packed codes == simulated weights: no second eager pass
    c = measure_variant(folder, man, x, y, runtimes=["onnxruntime"], cfg=FAST)  # no eager: the simulation runs
    assert c["accuracy_sim_source"] == "simulated form" and c["accuracy_sim"] == a["accuracy_sim"]
    assert abs(a["runtimes"]["onnxruntime"]["accuracy"] - a["accuracy_sim"]) <= 0.01


def test_evaluate_deployed_rows_references_and_bad_input(variants):
    found, x, y = variants
    with pytest.raises(ValueError, match=r"^evaluate\.runtimes: runtime 'tvm' is unknown; allowed: "):
        evaluate_deployed(found, x, y, runtimes=["onnxruntime", "tvm"], cfg=FAST)
    out = evaluate_deployed(found, x, y, runtimes=["torch-eager", "onnxruntime"], cfg=FAST)
    det = {r["variant"]: r for r in out["deterministic"]}
    lat = {r["variant"]: r for r in out["latency"]}
    assert det["w4a8"]["accuracy_runtime"] == "torch-eager"  # the first enabled runtime: deterministic choice
    assert {"accuracy.torch-eager", "accuracy.onnxruntime"} <= set(det["w4a8"])
    assert not any(k.startswith("latency") or k.startswith("fastest") for k in det["w4a8"])
    ref = out["references"][arch_key(SPEC)]
    assert ref["reference"] == "fp32" and {"eager_b1", "best_fp32_b1", "eager_b64", "best_fp32_b64"} <= set(ref)
    fastest = lat["fp32"]["fastest_b1"]
    assert lat["fp32"]["speedup_vs_best_fp32_b1"] == pytest.approx(1.0)  # the reference against itself
    own = out["results"]["fp32"]["runtimes"]  # the reference's own measurement: its eager over its fastest engine
    assert lat["fp32"]["speedup_vs_eager_b1"] == pytest.approx(own["torch-eager"]["latency_ms_b1"] / own[fastest]["latency_ms_b1"])
    assert lat["w4a8"]["lowp_ops_b1"].startswith(("int8 2/2", "int8 0/2"))


def test_reference_is_timed_next_to_each_variant(variants, monkeypatch):
    """evaluate_deployed: after each variant the fp32 reference is timed again on its fastest fp32 engine
    (each batch size) and the variant's speed-up against it uses THAT timing, not one from another moment
    of a CPU whose speed drifts; the reference against itself is exactly 1, from its own measurement."""
    import compress.deploy.measure as measure

    found, x, y = variants
    given = []

    def drifting(self, p, x_):  # every timing slower than the one before: a CPU slowing down
        given.append(0.01 * (len(given) + 1))
        return given[-1]

    monkeypatch.setattr(measure.ReferenceClock, "_time", drifting)
    order = sorted(found, key=lambda fm: fm[1].variant) * 2  # fp32 (the reference), w4a8, fp32, w4a8
    out = evaluate_deployed(order, x, y, runtimes=["torch-eager", "onnxruntime"], cfg=FAST)
    assert len(given) == 2 * 2  # after each w4a8: the best fp32 engine at batch 1 and 64
    lat = [r for r in out["latency"] if r["variant"] == "w4a8"]
    res = out["results"]["w4a8"]  # the second measurement
    own = out["results"]["fp32"]["runtimes"]["torch-eager"]  # eager: the reference's own (second) measurement
    for b, best in ((1, given[2]), (64, given[3])):
        ms = res["runtimes"][res["fastest"][f"b{b}"]][f"latency_ms_b{b}"]
        assert lat[1][f"speedup_vs_best_fp32_b{b}"] == pytest.approx(best / ms)
        assert lat[1][f"speedup_vs_eager_b{b}"] == pytest.approx(own[f"latency_ms_b{b}"] / ms)
    assert lat[0]["speedup_vs_best_fp32_b1"] != pytest.approx(lat[1]["speedup_vs_best_fp32_b1"])
    fp32 = [r for r in out["latency"] if r["variant"] == "fp32"]
    assert [r["speedup_vs_best_fp32_b1"] for r in fp32] == [1.0, 1.0], fp32
    ref = out["references"][arch_key(SPEC)]
    assert ref["reference"] == "fp32" and ref["timings"] == 4  # two own measurements, two timings after w4a8
    assert ref["best_fp32_range_b1"][1] == pytest.approx(given[2])


def test_speedups_arithmetic_and_reference_choice():
    res = {"fastest": {"b1": "ort"}, "runtimes": {"ort": {"latency_ms_b1": 0.05}}}
    ref = {"eager_b1": 0.2, "best_fp32_b1": 0.04}
    assert speedups(res, ref) == {"speedup_vs_eager_b1": pytest.approx(4.0), "speedup_vs_best_fp32_b1": pytest.approx(0.8)}
    m = Manifest(variant="v", stage="t", method="t", model=SPEC, dataset="s", seed=0, avg_weight_bits=32.0, act_bits=None,
                 sparsity=0.0, params=1, deploy=Form("torch-eager", ["m"]))
    assert is_fp32_reference(m)
    m.sparsity = 0.9
    assert not is_fp32_reference(m)
    bc = model_spec("binaryconnect_mlp", {"hidden": [64, 64], "mode": "det"}, [1, 28, 28], 10)
    assert arch_key(bc) == arch_key(model_spec("mlp", {"hidden": [64, 64], "batchnorm": True}, [1, 28, 28], 10))
    det, lat = variant_rows(m, {"variant": "v", "runtimes": {}, "fastest": {"b1": None}}, None)
    assert det["accuracy"] is None and "latency_ms_b1" not in lat


def test_config_validates_with_the_key_name():
    with pytest.raises(ValueError, match=r"evaluate\.budget_s = 0 is invalid; allowed: > 0"):
        MeasureConfig(budget_s=0)
    with pytest.raises(ValueError, match=r"evaluate\.max_repeats = 2 is invalid; allowed: >= min_repeats"):
        MeasureConfig(min_repeats=5, max_repeats=2)


def test_unknown_artifact_is_skipped_not_fatal(variants, tmp_path):
    found, x, y = variants
    man = Manifest(variant="odd", stage="t", method="t", model=SPEC, dataset="s", seed=0, avg_weight_bits=32.0, act_bits=None,
                   sparsity=0.0, params=1, deploy=Form("my-own-format", ["x.bin"]))
    res = measure_variant(tmp_path, man, x, y, runtimes=["onnxruntime"], cfg=FAST)
    assert res["runtimes"] == {} and "no deploy graphs for runtime 'my-own-format'" in res["skipped"]["onnxruntime"]


def test_load_predictor_with_an_engine(variants):
    from compress.deploy.graphs import engine_predictor
    from compress.runtimes import load_predictor

    found, x, y = variants
    folder, man = next((f, m) for f, m in found if m.variant == "w4a8")
    p = engine_predictor(folder, man, "onnxruntime")
    assert "ONNX Runtime" in p.description and p(x[:4]).shape == (4, 10)
    assert "fp32 kernels" in load_predictor(folder, man).description  # the registered runtime, as before
    with pytest.raises(ValueError, match="n/a: pt2e runs pt2 graphs"):
        engine_predictor(folder, man, "pt2e")


@pytest.mark.parametrize("quantizer", ["fixed", "lsq"])
def test_sim_with_weights_fake_quantized_once_is_bit_identical(quantizer):
    from compress.deploy.measure import weights_fake_quantized_once
    from compress.models import LeNet5
    from compress.quant.qat import prepare_qat

    torch.manual_seed(0)
    m = LeNet5().eval()
    x = torch.randn(32, 1, 28, 28)
    q = prepare_qat(m, 4, 8, calibrate(m, x, ["minmax"])["minmax"], quantizer).eval()
    frozen = weights_fake_quantized_once(q)
    with torch.no_grad():
        assert torch.equal(frozen(x), q(x))
    assert all(getattr(mod, "wspec", None) is None for mod in frozen.modules())


def test_ort_sessions_do_not_spin():
    """ONNX Runtime's spinning pool threads slowed the next engine timed after it (eager 1.8x at batch 256):
    every engine session and the PTQ runtime's session turn spinning off."""
    from compress.deploy.engines import ort_options

    assert ort_options().get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_default_engines_leave_out_a_superseded_one():
    """evaluate.runtimes null: every installed engine except pt2e when pt2e-aoti is usable too (same program,
    same kernels, slower); named explicitly, pt2e is timed."""
    from compress.deploy.engines import get_engine, resolve_runtimes

    usable, skipped = resolve_runtimes(None)
    names = [e.name for e in usable]
    if get_engine("pt2e-aoti").check() is None:
        assert "pt2e" not in names and "pt2e-aoti" in names
        assert skipped["pt2e"].startswith("left out by default: pt2e-aoti runs the same graphs") and "evaluate.runtimes" in skipped["pt2e"]
    named, _ = resolve_runtimes(["pt2e", "onnxruntime"])
    assert [e.name for e in named] == ["pt2e", "onnxruntime"] or get_engine("pt2e").check() is not None
