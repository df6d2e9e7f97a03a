"""Quantized models as variants (compress/variants.py): the one place that decides a quantized artifact's
deployed form and writes its files.

Forms: ``onnxruntime-int8`` (static QDQ ONNX, W8A8 per-channel symmetric), ``pt2e-inductor-int8`` (PT2E program),
``packed`` (bit-packed integer codes + scales + activation ranges, ``.cspk``), ``lowp-float`` (fp16 / bf16 / fp8
weights in that dtype), each beside the simulated form ``quant-sim`` (fp32 weights + the fake-quant recipe).
"""
from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from compress.models import count_params, prunable_layers
from compress.variants import Form, Manifest, write_variant


PACKED_DEPLOY = ("at load compress.deploy builds int8 QDQ graphs from the stored codes where the layer inputs are "
                 "8-bit or narrower (ONNX Runtime / OpenVINO int8 kernels), else decodes to fp32; evaluate measures every engine")


def deploy_form(wbits: int, abits: int | None, *, symmetric: bool = True, granularity: str = "channel",
                int8_runtime: bool = True) -> str:
    """The runtime a WbAa integer variant deploys on: ONNX Runtime int8 when the grid is what int8 kernels
    take (8-bit per-channel symmetric weights, 8-bit activations, and the method is deployed there),
    otherwise the bit-packed artifact."""
    if wbits == 8 and abits == 8 and symmetric and granularity == "channel" and int8_runtime:
        return "onnxruntime-int8"
    return "packed"


def _manifest(folder: Path, *, variant: str, stage: str, method: str, spec: dict, dataset: str, seed: int, wbits: float,
              abits: int | None, params: int, deploy: Form, sim: Form | None, notes: str, extra: dict) -> Manifest:
    man = Manifest(variant=variant, stage=stage, method=method, model=spec, dataset=dataset, seed=seed,
                   avg_weight_bits=float(wbits), act_bits=abits, sparsity=0.0, params=params, deploy=deploy, sim=sim,
                   notes=notes, extra=extra)
    write_variant(folder, man)
    return man


def write_int8_onnx(folder: Path, qmodel: nn.Module, base: nn.Module, x_calib: torch.Tensor,
                    ranges: dict[str, tuple[float, float]]) -> Form:
    """W8A8 on ONNX Runtime int8 (static QDQ) with the simulation's weight grid and layer-input ranges."""
    from compress.quant.deploy import (
        export_onnx,
        quantize_onnx_int8,
        simulated_float_model,
    )

    with tempfile.TemporaryDirectory() as tmp:
        fp32 = export_onnx(simulated_float_model(qmodel, base), Path(tmp) / "m.onnx", x_calib[:2])
        quantize_onnx_int8(fp32, folder / "model.int8.onnx", x_calib, ranges)
    return Form("onnxruntime-int8", ["model.int8.onnx"])


ORT_NOTE = ("ORT also quantizes conv/linear outputs (min-max on the calib split), the simulation does not")


# --------------------------------------------------------------------------- PTQ
@dataclass
class PtqVariant:
    name: str
    folder: Path
    sim_model: nn.Module
    deploy: Form
    row: dict = field(default_factory=dict)


def ptq_variants(base: nn.Module, spec: dict, ranges_file: dict, Q, x_calib: torch.Tensor, out: Path, *, dataset: str,
                 seed: int, ranges_source: str) -> list[PtqVariant]:
    """Write every PTQ variant of ``Q`` (a PTQConfig) under ``out``: each bit width x each calibration method
    (plus the PT2E W8A8 extras), then each float format. Returns them in order, with their simulated models."""
    from compress.quant.config import parse_tag
    from compress.quant.deploy import export_pt2e_int8, simulated_float_model
    from compress.quant.fakequant import quantize_model_float
    from compress.quant.formats import get_format
    from compress.quant.observers import read_ranges
    from compress.quant.ptq import (
        build_int_sim,
        float_sim_cfg,
        int_sim_cfg,
        int_specs,
        save_float_weights,
        save_packed_model,
        write_sim,
    )

    done: list[PtqVariant] = []
    nonzero = count_params(base, nonzero=True)
    ort_methods = Q.ort_methods if Q.ort_methods is not None else Q.methods
    common = dict(stage="ptq", spec=spec, dataset=dataset, seed=seed, params=nonzero)
    # 1. integer variants: every bit width x every calibration method
    for tag in Q.bits:
        wbits, abits = parse_tag(tag)
        for method in Q.methods:
            ranges = read_ranges(ranges_file, method, abits, ranges_source)
            ws, as_ = int_specs(wbits, abits, Q.weight_granularity, Q.group_size, Q.rounding, Q.weight_symmetric)
            qm = build_int_sim(base, wbits, abits, ranges, ws, as_)
            name = f"ptq-{tag}-{method}"
            folder = out / name
            folder.mkdir(parents=True)
            sim = write_sim(folder, base, int_sim_cfg(wbits, abits, ranges, ws, as_))
            extra = {"calibration": method, "wbits": wbits, "abits": abits, "weight_granularity": Q.weight_granularity,
                     "rounding": Q.rounding}
            what = (f"W{wbits}A{abits} PTQ, weights {Q.weight_granularity} {'symmetric' if ws.symmetric else 'asymmetric'}, "
                    f"activations per-tensor ({method} ranges)")
            runtime = deploy_form(wbits, abits, symmetric=ws.symmetric, granularity=Q.weight_granularity,
                                  int8_runtime=method in ort_methods)
            if runtime == "onnxruntime-int8":
                deploy = write_int8_onnx(folder, qm, base, x_calib, ranges)
                notes = (f"{what}; deployed on ONNX Runtime int8 (QDQ) with the same weight grid and layer-input "
                         f"ranges; {ORT_NOTE}")
            else:
                save_packed_model(qm, folder / "model.cspk", {"variant": name})
                deploy = Form("packed", ["model.cspk"])
                notes = f"{what}; {wbits}-bit weights bit-packed; {PACKED_DEPLOY}"
            _manifest(folder, variant=name, method="ptq", wbits=wbits, abits=abits, deploy=deploy, sim=sim, notes=notes,
                      extra=extra, **common)
            done.append(PtqVariant(name, folder, qm, deploy, {"calibration": method, "wbits": wbits, "abits": abits}))
            if tag == "w8a8" and method in Q.pt2e_methods and ws.symmetric and Q.weight_granularity == "channel":
                name2, f2 = f"{name}-pt2e", out / f"{name}-pt2e"
                f2.mkdir(parents=True)
                sim2 = write_sim(f2, base, int_sim_cfg(wbits, abits, ranges, ws, as_))
                export_pt2e_int8(simulated_float_model(qm, base), f2 / "model.int8.pt2", x_calib, ranges)
                dep2 = Form("pt2e-inductor-int8", ["model.int8.pt2"])
                _manifest(f2, variant=name2, method="ptq", wbits=wbits, abits=abits, deploy=dep2, sim=sim2,
                          notes=f"{what}; deployed with PT2E X86InductorQuantizer + torch.compile(freezing): oneDNN int8 "
                                "kernels; the artifact is a torch.export program (int8 weights + serialized graph)",
                          extra=extra, **common)
                done.append(PtqVariant(name2, f2, qm, dep2, {"calibration": method, "wbits": wbits, "abits": abits}))
    # 2. float formats
    for fmt in Q.floats:
        f = get_format(fmt)
        name = f"ptq-{fmt.replace('_', '-')}"
        folder = out / name
        folder.mkdir(parents=True)
        save_float_weights(base, fmt, folder / "model.safetensors")
        sim = write_sim(folder, base, float_sim_cfg(fmt, Q.float_activations))
        qm = quantize_model_float(base, fmt, "same" if Q.float_activations else None)
        deploy = Form("lowp-float", ["model.safetensors"], {"format": fmt, "activations": Q.float_activations})
        abits = f.bits if Q.float_activations else None
        _manifest(folder, variant=name, method="ptq-float", wbits=f.bits, abits=abits, deploy=deploy, sim=sim,
                  notes=f"{fmt} (t={f.t}, emin={f.emin}, emax={f.emax}, {f.overflow} on overflow) weights stored in torch "
                        f"{f.torch_dtype}; {'layer inputs rounded to ' + fmt if Q.float_activations else 'float32 activations'}; "
                        "fp32 kernels", extra={"format": fmt, "unit_roundoff": 2.0 ** -f.t}, **common)
        done.append(PtqVariant(name, folder, qm, deploy, {"calibration": "", "wbits": f.bits, "abits": abits}))
    return done


# --------------------------------------------------------------------------- mixed precision (HAWQ, search)
def write_quant_variant(folder: Path, qmodel: nn.Module, variant: str, stage: str, method: str, spec: dict, dataset: str,
                        seed: int, avg_bits: float, act_bits: int | None, notes: str = "") -> int:
    """A fake-quant model (``quantize_model`` wrappers) as a variant of the quant family's forms:
    deploy = bit-packed codes + scales + activation ranges (``packed`` runtime), sim = the float
    shadow weights + the per-layer recipe (``quant-sim``).  Returns the deployed bytes."""
    from compress.models import model_from_spec
    from compress.quant.fakequant import act_spec, weight_spec
    from compress.quant.packing import load_packed
    from compress.quant.ptq import int_sim_cfg, save_packed_model, write_sim

    folder.mkdir(parents=True, exist_ok=True)
    layers = prunable_layers(qmodel)
    wbits = {n: m.wspec.bits for n, m in layers.items()}
    ranges = {n: (float(m.act_lo), float(m.act_hi)) for n, m in layers.items() if m.aspec is not None}
    save_packed_model(qmodel, folder / "model.cspk", {"model": spec})
    qts, _, _ = load_packed(folder / "model.cspk")  # the artifact must hold exactly the simulated weights
    for n, m in layers.items():
        if not (qts[f"{n}.weight"].dequantize() == m.weight_fake_quant().detach()).all():
            raise RuntimeError(f"{variant}: packed {n}.weight does not reload to the simulated weights")
    base = model_from_spec(spec)
    base.load_state_dict({k: v for k, v in qmodel.state_dict().items() if k.rsplit(".", 1)[-1] not in ("act_lo", "act_hi")})
    ws = weight_spec(8).with_bits(8)
    sim = write_sim(folder, base, int_sim_cfg(wbits, act_bits, ranges, ws, act_spec(act_bits) if act_bits else None))
    _manifest(folder, variant=variant, stage=stage, method=method, spec=spec, dataset=dataset, seed=seed, wbits=avg_bits,
              abits=act_bits, params=count_params(qmodel, nonzero=True), deploy=Form("packed", ["model.cspk"]), sim=sim,
              notes=notes, extra={"weight_bits": wbits})
    return (folder / "model.cspk").stat().st_size


# --------------------------------------------------------------------------- QAT
def write_qat_variant(folder: Path, q: nn.Module, baseline: nn.Module, *, variant: str, spec: dict, dataset: str, seed: int,
                      wbits: int, abits: int | None, quantizer: str, epochs: int, x_calib: torch.Tensor, extra: dict,
                      check: Callable[[Manifest, Form], None] | None = None) -> tuple[Manifest, Form]:
    """A trained QAT model: bit-packed codes (its simulated form, reloaded by the ``packed`` runtime) and, for
    W8A8, the same grid on ONNX Runtime int8. Returns (manifest, sim form)."""
    from compress.quant.qat import (
        export_quantized,
        save_qat_packed,
        weight_bits_average,
    )
    from compress.quant.quantizers import quantizer as get_quantizer

    qts, floats, acts = export_quantized(q)
    folder.mkdir(parents=True, exist_ok=True)
    packed = save_qat_packed(q, folder / "model.cspk", {"variant": variant})
    sim = Form(runtime="packed", files=[packed.name])
    what = f"W{wbits}A{abits if abits else 'fp'} QAT ({quantizer}, {epochs} epochs from the baseline)"
    if deploy_form(wbits, abits) == "onnxruntime-int8":
        deploy = write_int8_onnx(folder, q, baseline, x_calib, {n: (a["lo"], a["hi"]) for n, a in acts.items()})
        note = get_quantizer(quantizer).deploy_note
        notes = (f"{what}; deployed on ONNX Runtime int8 (QDQ) with the QAT weight grid and layer-input ranges; {ORT_NOTE}"
                 + (f"; {note}" if note else ""))
    else:  # sub-8-bit: bit-packed codes; compress.deploy builds int8 graphs from them at load
        deploy = sim
        notes = f"{what}; {wbits}-bit weight codes bit-packed; {PACKED_DEPLOY}"
    man = _manifest(folder, variant=variant, stage="qat", method=f"qat-{quantizer}", spec=spec, dataset=dataset, seed=seed,
                    wbits=weight_bits_average(qts, baseline), abits=abits,
                    params=sum(qt.q.numel() for qt in qts.values()) + sum(t.numel() for t in floats.values()),
                    deploy=deploy, sim=sim, notes=notes, extra=extra)
    return man, sim




def write_binary_variant(folder: Path, run: dict, B, input_shape, num_classes: int, *, dataset: str,
                         val: tuple[torch.Tensor, torch.Tensor], note: str) -> dict:
    """One :func:`compress.quant.binary.train_runs` result as a variant: BinaryConnect runs as the 1-bit
    packed artifact (``binary-packed``), the fp32 reference MLP as a state dict (``torch-eager``).

    The artifact is re-loaded through its runtime and must reproduce the trained net's validation
    accuracy (measured in the worker) within 0.1 pp. Returns the run's table row."""
    from compress.checkpoint import save_state_dict
    from compress.evaluate import accuracy
    from compress.models import MLP
    from compress.quant.binary import BinaryMLP, packed_size_bound, save_binary
    from compress.runtimes import load_predictor
    from compress.variants import model_spec, read_manifest

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    method, seed = run["method"], run["seed"]
    common = {"epochs": B.epochs, "early_stop_iteration": run["best_iteration"], "note": note}
    if method == "fp32":
        kwargs = {"hidden": list(B.hidden), "batchnorm": True}
        model = MLP(input_shape, num_classes, **kwargs)
        model.load_state_dict(run["state"])
        path = save_state_dict(model.eval(), folder / "model.safetensors")
        manifest = Manifest(variant=folder.name, stage="binary", method="fp32-mlp", model=model_spec("mlp", kwargs, input_shape, num_classes),
                            dataset=dataset, seed=seed, avg_weight_bits=32.0, act_bits=None, sparsity=0.0,
                            params=count_params(model, nonzero=True), deploy=Form("torch-eager", ["model.safetensors"]),
                            notes="unregularised fp32 reference of the BinaryConnect table",
                            extra={"test_error": run["test_error"], **common})
    else:
        model = BinaryMLP(input_shape, num_classes, hidden=B.hidden, mode=method)
        model.load_state_dict(run["state"])
        model.eval().set_eval_weights("binary")
        path = save_binary(model, folder / "model.bc1.safetensors")
        n_w = sum(m.weight.numel() for _, m in model.binary_layers())
        n_out = sum(m.out_features for _, m in model.binary_layers())
        manifest = Manifest(
            variant=folder.name, stage="binary", method=f"binaryconnect-{method}",
            model=model_spec("binaryconnect_mlp", {"hidden": list(B.hidden), "mode": method}, input_shape, num_classes),
            dataset=dataset, seed=seed, avg_weight_bits=1.0, act_bits=None, sparsity=0.0, params=n_w + 2 * n_out,
            deploy=Form("binary-packed", [path.name]),
            notes="1 bit per weight (numpy.packbits) + BN folded to fp32 scale/shift; deployed with sign(w_r)"
                  + ("; the paper reports stoch with real-valued weights (see extra)" if method == "stoch" else ""),
            extra={"test_error_binary_weights": run["test_error_binary"], "test_error_real_weights": run["test_error_real"],
                   "size_bound_bytes": packed_size_bound(model), **common})
    write_variant(folder, manifest)
    got = accuracy(load_predictor(folder, read_manifest(folder)), val[0], val[1])
    want = 1 - run["val_error_deployed"] / 100
    if abs(got - want) > 1e-3:
        raise RuntimeError(f"{folder.name}: the artifact's val accuracy {got:.4f} disagrees with the trained net's {want:.4f}")
    return {"method": method, "seed": seed, "test_error": run["test_error"], "test_error_binary": run["test_error_binary"],
            "test_error_real": run["test_error_real"], "bytes": path.stat().st_size, "best_iteration": run["best_iteration"],
            "seconds": round(run["seconds"], 2), "cpu_seconds": round(run["cpu_seconds"], 2)}


__all__ = ["PtqVariant", "deploy_form", "ptq_variants", "write_binary_variant", "write_int8_onnx", "write_qat_variant",
           "write_quant_variant"]
