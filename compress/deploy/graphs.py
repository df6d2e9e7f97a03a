"""From a variant's artifact (its manifest ``Form``) to the graphs that run it: built at load,
in memory, from the compact files on disk.  One builder per existing runtime name; the forms the
stages write today keep working and gain fast engines:

    form runtime          graphs (in order of preference)
    packed, quant-sim     onnx int8 QDQ from the stored b-bit codes (b <= 8): codes x K for ONNX Runtime,
                          the codes as stored for OpenVINO (see qdq_from_codes) | torch eager (decoded)
    onnxruntime-int8/fp32 onnx: the stored file as is
    pt2e-inductor-int8    pt2: the stored int8 program
    torch-eager/-compile  onnx fp32 | torch eager
    lowp-float            onnx fp32 + Cast rounding of each layer input | torch eager
    sparse-eager          onnx fp32 (decoded dense) | torch eager | torch-sparse (CSR Linear, >= 90 % zeros)
    binary-packed         onnx fp32 (+-1 weights with the folded BN scale, one Gemm per layer) | torch eager
    structured-eager      onnx fp32 (Monarch: reshape/transpose + batched MatMul) | torch eager

Each engine (compress/deploy/engines.py) takes the first graph it accepts.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from compress.deploy.engines import DeployGraph, Engine, EnginePredictor
from compress.variants import Form, Manifest

GraphBuilder = Callable[[Path, Manifest, Form], list[DeployGraph]]
GRAPH_BUILDERS: dict[str, GraphBuilder] = {}
SPARSE_MIN = 0.9  # CSR Linear layers only from this fraction of zeros (measured: below, dense kernels win)


def register_graphs(*runtimes: str):
    def deco(fn: GraphBuilder) -> GraphBuilder:
        for r in runtimes:
            if r in GRAPH_BUILDERS and GRAPH_BUILDERS[r] is not fn:
                raise RuntimeError(f"graph builder for runtime {r!r} registered twice")
            GRAPH_BUILDERS[r] = fn
        return fn

    return deco


def build_graphs(folder: str | Path, manifest: Manifest, form: Form | None = None) -> list[DeployGraph]:
    """Every graph the artifact of ``form`` (default: the deploy form) can run as."""
    form = form or manifest.deploy
    if form.runtime not in GRAPH_BUILDERS:
        raise ValueError(f"variant {manifest.variant}: no deploy graphs for runtime {form.runtime!r}; "
                         f"known: {', '.join(sorted(GRAPH_BUILDERS))}")
    return GRAPH_BUILDERS[form.runtime](Path(folder), manifest, form)


def deploy_predictors(folder: str | Path, manifest: Manifest, engines: list[Engine], form: Form | None = None,
                      graphs: list[DeployGraph] | None = None) -> tuple[dict[str, EnginePredictor], dict[str, str]]:
    """({engine: predictor}, {engine: why it does not run this variant}).  Each engine gets the
    first graph it accepts; a graph it fails to build is skipped with the error as the reason.
    Reasons that start with "n/a:" mean the engine does not apply to this kind of artifact
    (e.g. the PT2E engine for anything but a PT2E program); the others are real skips."""
    graphs = graphs if graphs is not None else build_graphs(folder, manifest, form)
    preds, skipped = {}, {}
    kinds = sorted({g.kind for g in graphs})
    for e in engines:
        rejected, failed = [], []
        if not set(e.kinds) & set(kinds):
            skipped[e.name] = f"n/a: {e.name} runs {'/'.join(e.kinds)} graphs; this variant has {'/'.join(kinds)}"
            continue
        for g in graphs:
            why = e.accepts(g)
            if why is not None:
                if g.kind in e.kinds:
                    rejected.append(why)
                continue
            try:
                preds[e.name] = e.build(g)
                preds[e.name].graph = g
                break
            except Exception as ex:  # an engine that cannot compile this graph: say so, go on
                failed.append(f"{e.name} failed on {g.label}: {type(ex).__name__}: {(str(ex).splitlines() or [''])[0][:160]}")
        if e.name not in preds:
            skipped[e.name] = "; ".join(dict.fromkeys(failed or rejected)) or "no graph"
    return preds, skipped


def _spec_model(manifest: Manifest) -> nn.Module:
    from compress.runtimes import model_from_spec

    return model_from_spec(manifest.model).eval()


def _input_shape(manifest: Manifest) -> tuple[int, ...]:
    return tuple(manifest.model["input_shape"])



def engine_predictor(folder: str | Path, manifest: Manifest, engine: str, form: Form | None = None) -> EnginePredictor:
    """The variant's files on the named deploy engine (e.g. "onnxruntime", "openvino"); an engine
    that cannot run it: ValueError with the reason."""
    from compress.deploy.engines import get_engine

    preds, skipped = deploy_predictors(folder, manifest, [get_engine(engine, "engine")], form)
    if engine not in preds:
        raise ValueError(f"variant {manifest.variant}: {skipped.get(engine, 'no graph')}")
    return preds[engine]

# --------------------------------------------------------------------------- fp32 models
def fp32_graphs(model: nn.Module, manifest: Manifest, label: str, notes: list[str] | None = None) -> list[DeployGraph]:
    from compress.deploy.onnx_build import fp32_graph

    model.eval()
    return [DeployGraph("onnx", fp32_graph(model, _input_shape(manifest)), f"{label} (ONNX, fp32 kernels)", "fp32", list(notes or [])),
            DeployGraph("torch", model, f"{label}, fp32", "fp32")]


@register_graphs("torch-eager", "torch-compile")
def _plain(folder: Path, manifest: Manifest, form: Form) -> list[DeployGraph]:
    from compress.checkpoint import load_into

    model = _spec_model(manifest)
    load_into(model, folder / form.files[0])
    return fp32_graphs(model, manifest, "fp32 weights")


@register_graphs("onnxruntime-fp32", "onnxruntime-int8")
def _onnx_file(folder: Path, manifest: Manifest, form: Form) -> list[DeployGraph]:
    import onnx

    proto = onnx.load(str(folder / form.files[0]))
    int8 = form.runtime.endswith("int8")
    label = "stored int8 QDQ ONNX (quantize_static)" if int8 else "stored fp32 ONNX"
    return [DeployGraph("onnx", proto, label, "int8" if int8 else "fp32")]


@register_graphs("pt2e-inductor-int8")
def _pt2(folder: Path, manifest: Manifest, form: Form) -> list[DeployGraph]:
    return [DeployGraph("pt2", folder / form.files[0], "stored PT2E int8 program (X86InductorQuantizer)", "int8")]


# --------------------------------------------------------------------------- integer grid
def _describe_qdq(report, bits: dict[str, int | None]) -> tuple[str, str, list[str]]:
    n, k = len(report.int8_layers) + len(report.fp32_layers), len(report.int8_layers)
    widths = sorted({b for b in bits.values() if b is not None})
    wdesc = "/".join(str(b) for b in widths) if widths else "?"
    notes = [f"{name}: fp32 kernel ({why})" for name, why in report.fp32_layers.items()]
    if k == n:
        return f"int8 QDQ built from the stored {wdesc}-bit codes ({k}/{n} layers on int8 kernels)", "int8", notes
    if k == 0:
        return f"{wdesc}-bit codes decoded, fp32 kernels with the simulated activation quantizers", "fp32", notes
    return f"int8 QDQ built from the stored {wdesc}-bit codes ({k}/{n} layers int8, others fp32)", "mixed", notes


def qdq_from_codes(model: nn.Module, manifest: Manifest, qts: dict, acts: dict) -> list[DeployGraph]:
    """The int8 graphs of an integer-grid variant: ``qts`` = {"<layer>.weight": QTensor} (stored
    codes), ``acts`` = {layer: {"lo", "hi", "spec"}} (stored activation quantizers); ``model``
    holds the decoded weights (used where a layer cannot be int8).  One graph with the stored codes
    (OpenVINO), and for sub-8-bit codes a second one with codes x K for ONNX Runtime (below)."""
    from compress.deploy.onnx_build import (
        ActQuant,
        LayerQuant,
        fp32_graph,
        layer_quant,
        qdq_graph,
    )
    from compress.models import prunable_layers
    from compress.quant.fakequant import QuantSpec

    layers: dict[str, LayerQuant] = {}
    for name in prunable_layers(model):
        a = acts.get(name)
        act = None
        if a is not None:
            spec = QuantSpec(**a["spec"]) if isinstance(a["spec"], dict) else a["spec"]
            if spec.rounding != "nearest" or spec.granularity != "tensor":
                raise ValueError(f"layer {name}: activation quantizer {spec} has no deterministic per-tensor Q/DQ form")
            act = ActQuant.from_range(a["lo"], a["hi"], spec)
        qt = qts.get(f"{name}.weight")
        layers[name] = layer_quant(qt, act) if qt is not None else LayerQuant(None, None, act, None, "float weights")
    fp32 = fp32_graph(model, _input_shape(manifest))
    # OpenVINO: the stored codes, every bias exact in float (its int8 kernels add it after the integer product)
    proto, report = qdq_graph(fp32, layers, int32_output_bias=False)
    label, prec, notes = _describe_qdq(report, {n: lq.bits for n, lq in layers.items()})
    sub8 = sorted({lq.act.bits for lq in layers.values() if lq.act is not None and lq.act.bits < 8})
    if sub8:
        notes.append(f"{'/'.join(map(str, sub8))}-bit activation codes run as uint8 codes: a Clip to the calibrated "
                     "range before each QuantizeLinear keeps them exact")
    if not report.int8_layers:  # fp32 kernels everywhere: one graph for every engine
        return [DeployGraph("onnx", proto, label, prec, notes)]
    exact = DeployGraph("onnx", proto, label, prec, notes,
                        exclude={"onnxruntime": "ONNX Runtime runs the int32-bias form of this graph"})
    # ONNX Runtime rounds each bias to an int32 multiple of s_x s_w (it needs that form to fuse the logits'
    # QGemm): give it codes x K, a K-times finer bias unit
    wide = {n: lq.widened() for n, lq in layers.items()}
    widened = any(wide[n] is not layers[n] for n in layers)
    wproto, _ = qdq_graph(fp32, wide, int32_output_bias=True)
    ort_notes = notes + ["ONNX Runtime rounds each bias to int32 at s_x s_w (at most half a unit)"]
    if widened:
        label_ort = f"{label}; codes x K per channel (K = 63 // max|code|) for a K-times finer int32 bias"
        ort_notes.append("it runs the stored codes times an integer K per channel with scales / K (same weights)")
    else:
        label_ort = label
    ort = DeployGraph("onnx", wproto, label_ort, prec, ort_notes,
                      exclude={"openvino": "OpenVINO runs the stored codes with exact float biases"})
    return [ort, exact]


@register_graphs("packed")
def _packed(folder: Path, manifest: Manifest, form: Form) -> list[DeployGraph]:
    """Bit-packed codes (PTQ / QAT / HAWQ / search): int8 graph from the codes, and the decoded
    eager model with activation fake-quant (today's ``packed`` runtime)."""
    from compress.quant.packing import load_packed
    from compress.quant.ptq import load_packed_model

    qts, floats, meta = load_packed(folder / form.files[0])
    model = _spec_model(manifest)
    model.load_state_dict({**floats, **{k: qt.dequantize() for k, qt in qts.items()}}, strict=True)
    graphs = qdq_from_codes(model, manifest, qts, meta.get("acts", {}))
    eager = load_packed_model(folder / form.files[0], _spec_model(manifest))
    return graphs + [DeployGraph("torch", eager, "packed codes decoded to fp32, activation fake-quant in Python", "fp32")]


@register_graphs("quant-sim")
def _sim(folder: Path, manifest: Manifest, form: Form) -> list[DeployGraph]:
    """The simulated form: integer recipes get the same int8 graph as their packed artifact
    (codes derived from the fp32 weights exactly as ``save_packed_model`` does); float recipes
    the Cast-rounded fp32 graph."""
    from compress.checkpoint import load_into
    from compress.models import prunable_layers
    from compress.quant.fakequant import (
        QConv2d,
        QLinear,
        quantize_model_float,
        quantize_weight,
    )
    from compress.quant.packing import QTensor
    from compress.quant.ptq import load_sim

    cfg = json.loads((folder / form.files[1]).read_text())
    qmodel = load_sim(folder, form.files, _spec_model(manifest))
    if cfg["kind"] == "float":
        base = _spec_model(manifest)
        load_into(base, folder / form.files[0])
        rounded = quantize_model_float(base, cfg["format"], act_fmt=None)  # weights on the format's grid
        return _lowp_graphs(rounded, manifest, cfg["format"], cfg["activations"]) + [
            DeployGraph("torch", qmodel, f"{cfg['format']} simulation in Python", "fp32")]
    # integer recipe: 1. codes and activation quantizers of every wrapped layer
    qts, acts = {}, {}
    for name, m in prunable_layers(qmodel).items():
        if isinstance(m, (QLinear, QConv2d)):
            if m.wspec is not None:
                q, s, z = quantize_weight(m.weight, m.wspec)
                qts[f"{name}.weight"] = QTensor(q, s, z, m.wspec)
            if m.aspec is not None:
                acts[name] = {"lo": float(m.act_lo), "hi": float(m.act_hi), "spec": m.aspec}
    # 2. the decoded float model (fp32 kernels where a layer cannot be int8)
    decoded = _spec_model(manifest)
    state = {k: (qts[k].dequantize() if k in qts else v) for k, v in qmodel.state_dict().items()
             if k.rsplit(".", 1)[-1] not in ("act_lo", "act_hi")}
    decoded.load_state_dict(state, strict=True)
    return qdq_from_codes(decoded, manifest, qts, acts) + [
        DeployGraph("torch", qmodel, "fake-quant simulation in Python", "fp32")]


# --------------------------------------------------------------------------- float formats
def _lowp_graphs(model: nn.Module, manifest: Manifest, fmt: str, activations: bool) -> list[DeployGraph]:
    from compress.deploy.onnx_build import fp32_graph, round_inputs_graph
    from compress.models import prunable_layers

    proto = fp32_graph(model, _input_shape(manifest))
    if activations:
        proto = round_inputs_graph(proto, list(prunable_layers(model)), fmt)
        how = "exact fp32 arithmetic (Veltkamp split)" if fmt.startswith("fp8") else "Cast pairs"
        label = f"{fmt} weights upcast at load, layer inputs rounded to {fmt} by {how}, fp32 kernels"
    else:
        label = f"{fmt} weights upcast at load, fp32 kernels"
    exclude = {}
    if activations and not fmt.startswith("fp8"):
        # measured (tests/deploy): OpenVINO folds f32->f16->f32 Cast pairs and rounds bf16 otherwise; the fp8
        # arithmetic form is plain fp32 Abs/Max/Mul/Add/Sub, and OpenVINO computes it bit for bit like ORT
        exclude["openvino"] = (f"OpenVINO does not round layer inputs through {fmt} Cast pairs like torch (it folds f16 "
                               "Cast pairs; bf16 results differ): it would not compute this variant")
    return [DeployGraph("onnx", proto, label, "fp32", [f"no {fmt} GEMM kernels on this CPU: compute is fp32"], exclude)]


@register_graphs("lowp-float")
def _lowp(folder: Path, manifest: Manifest, form: Form) -> list[DeployGraph]:
    from compress.checkpoint import read_state_dict
    from compress.quant.ptq import load_float_weights

    fmt, acts = form.options["format"], form.options.get("activations", True)
    model = _spec_model(manifest)
    model.load_state_dict({k: v.to(torch.float32) for k, v in read_state_dict(folder / form.files[0]).items()}, strict=True)
    eager = load_float_weights(folder / form.files[0], _spec_model(manifest), fmt, acts)
    return _lowp_graphs(model, manifest, fmt, acts) + [
        DeployGraph("torch", eager, f"{fmt} weights upcast at load" + (f", {fmt}-rounded layer inputs" if acts else ""), "fp32")]


# --------------------------------------------------------------------------- sparse
@register_graphs("sparse-eager")
def _sparse(folder: Path, manifest: Manifest, form: Form) -> list[DeployGraph]:
    from compress.prune.sparse_io import load_sparse

    model = _spec_model(manifest)
    model.load_state_dict(load_sparse(folder / form.files[0]))
    return dense_and_sparse_graphs(model, manifest, "sparse weights decoded to dense")


def dense_and_sparse_graphs(model: nn.Module, manifest: Manifest, label: str) -> list[DeployGraph]:
    """A model whose pruned weights are zeros: fp32 graphs (dense kernels), plus torch.sparse CSR for
    Linear layers with at least ``SPARSE_MIN`` zeros."""
    from compress.deploy.sparse import csr_model, sparse_linear_layers

    graphs = fp32_graphs(model, manifest, label, ["no sparse GEMM kernel in ONNX Runtime / OpenVINO on this CPU: dense fp32 work"])
    sparse = sparse_linear_layers(model, SPARSE_MIN)
    if sparse:
        graphs.append(DeployGraph("torch-sparse", csr_model(model, sparse),
                                  f"CSR sparse Linear ({', '.join(f'{n} {100 * z:.0f}%' for n, z in sparse.items())} zeros), "
                                  "other layers dense fp32", "fp32"))
    return graphs


# --------------------------------------------------------------------------- recipe artifacts
@register_graphs("recipe-decoded")
def _recipe(folder: Path, manifest: Manifest, form: Form) -> list[DeployGraph]:
    """A recipe artifact (relative indices + shared-weight codes, entropy-coded) decoded once at load:
    the weights are fp32 values from a small codebook, most of them zero."""
    from compress.recipes.artifact import read_artifact
    from compress.recipes.tensors import model_from_artifact

    model = model_from_artifact(read_artifact(folder / form.files[0])).eval()
    return dense_and_sparse_graphs(model, manifest, "recipe artifact decoded to dense fp32")


# --------------------------------------------------------------------------- BinaryConnect
class FoldedBinaryMLP(nn.Module):
    """The 1-bit artifact as plain Linear layers: W' = diag(scale) W_b (+-1 signs times the folded
    BN scale), bias = shift; one Gemm per layer in ONNX (same function as PackedBinaryMLP)."""

    def __init__(self, layers: list[dict[str, torch.Tensor]]):
        super().__init__()
        mods: list[nn.Module] = [nn.Flatten()]
        for i, layer in enumerate(layers):
            w = layer["weight"]  # (out, in) in {-1, +1}
            lin = nn.Linear(w.shape[1], w.shape[0])
            with torch.no_grad():
                lin.weight.copy_(w * layer["scale"][:, None])
                lin.bias.copy_(layer["shift"])
            mods.append(lin)
            if i < len(layers) - 1:
                mods.append(nn.ReLU())
        self.net = nn.Sequential(*mods)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, classes)
        return self.net(x)


@register_graphs("binary-packed")
def _binary(folder: Path, manifest: Manifest, form: Form) -> list[DeployGraph]:
    from compress.deploy.onnx_build import fp32_graph
    from compress.quant.binary import PackedBinaryMLP, load_binary

    layers = load_binary(folder / form.files[0])
    folded = FoldedBinaryMLP(layers).eval()
    proto = fp32_graph(folded, _input_shape(manifest))
    return [DeployGraph("onnx", proto, "1-bit signs unpacked at load, BN scale folded into the weights (fp32 kernels)", "fp32",
                        ["activations are float in BinaryConnect: no integer kernel applies exactly"]),
            DeployGraph("torch", PackedBinaryMLP(layers).eval(), "1-bit signs unpacked to +-1 fp32 at load", "fp32")]


# --------------------------------------------------------------------------- structured layers (Monarch)
@register_graphs("structured-eager")
def _structured(folder: Path, manifest: Manifest, form: Form) -> list[DeployGraph]:
    from compress.structured.runtime import load_structured_model

    model = load_structured_model(folder, manifest, form)
    fmt = form.options.get("format", "fp32")
    notes = []
    if fmt == "packed":
        notes.append(f"int{form.options.get('bits', '?')} factors dequantized at load: the variant has float activations and no "
                     "runtime here has a faster batched int8 matmul for these block sizes (benchmarks/bench_deploy.py)")
    kind = form.options.get("structure", "monarch")
    how = "2 batched MatMul + reshape/transpose" if kind == "monarch" else "its factors' MatMuls"
    return fp32_graphs(model, manifest, f"{kind} factors ({how})", notes)


__all__ = [
    "GRAPH_BUILDERS",
    "SPARSE_MIN",
    "FoldedBinaryMLP",
    "build_graphs",
    "deploy_predictors",
    "engine_predictor",
    "fp32_graphs",
    "qdq_from_codes",
    "register_graphs",
]
