"""Build ONNX graphs in memory from a variant's decoded tensors (nothing extra is written to disk).

* :func:`fp32_graph` — the model as an fp32 ONNX ``ModelProto`` (TorchScript exporter: parameter
  names such as ``conv1.weight`` stay initializer names, which map Conv/Gemm nodes to layers).
  The exported skeleton is cached per architecture and refilled with each variant's weights.
* :func:`qdq_graph` — the int8 QDQ graph of an integer-grid variant.  A ``b``-bit weight code
  (b <= 8) IS an int8 value: the weight initializer is the stored code tensor ``q - z`` (int8)
  with the stored per-channel scale ``1/s``; the bias is int32 at scale ``s_x s_w``; each layer
  input gets QuantizeLinear/DequantizeLinear with the stored activation range.  ONNX Runtime
  fuses this into QLinearConv / QGemm; OpenVINO into int8 convolution / fully-connected kernels.
* :func:`round_inputs_graph` — each layer input rounded to fp16 / bf16 (Cast pairs) or fp8 (exact fp32 arithmetic).

Exactness of the QDQ graph against the simulation (fake quantization in fp32), step by step:
  1. weights: ``DQ(q - z) = (q - z) * (1/s)`` vs the simulation's ``(q - z) / s``: equal up to
     one float32 rounding of the scale (relative 6e-8).
  2. layer inputs: ``Q(x) = round(x / (1/s)) + z`` vs ``round(s x + z)``: equal except when
     ``s x`` lies within float32 rounding of a .5 tie.  Sub-8-bit activation codes: a Clip to
     the representable range ``[(q_min - z)/s, (q_max - z)/s]`` precedes the uint8 Q, so the
     int8 kernel sees exactly the simulation's codes.
  3. outputs: an int8 conv / gemm must requantize its output.  It is quantized with the NEXT
     layer's input (s, z) when only ReLU / MaxPool / Flatten / Reshape lie between them: these
     commute with a monotone quantizer that represents 0 exactly, ``Q(relu(v)) = max(Q(v), Q(0))``,
     ``Q(maxpool(v)) = maxpool(Q(v))``, so the next layer sees the same codes as in the
     simulation.  Between the two layers every op gets the same Q/DQ (grid values stay grid
     values), and a ReLU is dropped when ``z`` is the code minimum (all values are then >= 0),
     so the engines run MaxPool / Flatten on the codes.  The int32 accumulation is exact; the
     requantization multiplies by ``s_x s_w / s_y`` in float32 (the simulation: fp32 conv then
     ``round(s_y v + z)``).
  4. biases (see :func:`qdq_graph`): OpenVINO adds the float bias after the int8 product, so
     its codes equal the simulation's (measured: W2A4 LeNet-5 logits within 1e-6).  ONNX
     Runtime's QLinearConv / QGemm take an int32 bias at scale ``s_x s_w``: its
     WeightBiasQuantization pass rounds every float bias (disabling the pass leaves fp32
     kernels), at most half an accumulator unit, which moves a requantized code by one step where
     the exact value lies that close to a rounding boundary.  ONNX Runtime therefore gets codes
     x K (``LayerQuant.widened``: a K-times finer unit); measured on the suite's LeNet-5 PTQ
     variants: test accuracy within 0.1 pp of the simulation (W4A4-KL +0.10 pp).
     The last layer has no output quantizer: its logits stay float.
Layers that cannot be int8 (per-group scales, > 8 bits, float activations, codes outside int8)
keep their exact float weights and fp32 kernels; activations with > 8 bits use float ops that
repeat the simulation's arithmetic: ``(clip(round(s x + z)) - z) / s``.
"""
from __future__ import annotations

import copy
import io
import json
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

OPSET = 17
INPUT, OUTPUT = "x", "logits"

# ops between two layers that commute with a monotone activation quantizer representing 0 exactly
_COMMUTING = ("Relu", "MaxPool", "Flatten", "Reshape", "Identity", "Squeeze", "Unsqueeze")


# --------------------------------------------------------------------------- fp32 export
def export_model(model: nn.Module, input_shape, opset: int = OPSET):
    """fp32 ModelProto of ``model`` with a dynamic batch axis, input ``x``, output ``logits``."""
    import onnx

    buf = io.BytesIO()
    example = torch.zeros(2, *input_shape)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), (example,), buf, dynamo=False, input_names=[INPUT], output_names=[OUTPUT],
                          dynamic_axes={INPUT: {0: "B"}, OUTPUT: {0: "B"}}, opset_version=opset)
    return onnx.load_from_string(buf.getvalue())


def _reusable(proto, state: Mapping[str, torch.Tensor]) -> bool:
    """True when every float tensor of the exported graph is a state-dict entry with the same
    value (nothing was folded), so the graph can be refilled with another variant's weights."""
    from onnx import numpy_helper

    for init in proto.graph.initializer:
        a = numpy_helper.to_array(init)
        if a.dtype.kind != "f":
            continue
        if init.name not in state or not np.array_equal(a, state[init.name].detach().cpu().numpy()):
            return False
    for node in proto.graph.node:
        if node.op_type == "Constant":
            for att in node.attribute:
                if att.t and att.t.data_type == 1 and np.prod(att.t.dims) > 16:
                    return False
    return True


_SKELETONS: dict[str, object] = {}


def _arch_key(model: nn.Module, input_shape) -> str:
    shapes = [(k, tuple(v.shape), str(v.dtype)) for k, v in model.state_dict().items()]
    return json.dumps([type(model).__qualname__, repr(model), list(input_shape), shapes])


def fp32_graph(model: nn.Module, input_shape, opset: int = OPSET):
    """The fp32 ONNX graph of ``model`` (float32 weights).  The first export of an architecture
    is cached and later models of the same architecture only replace the initializers."""
    from onnx import numpy_helper

    state = {k: v.detach().float().cpu() for k, v in model.state_dict().items()}
    key = _arch_key(model, input_shape) + f"|{opset}"
    if key in _SKELETONS:
        proto = copy.deepcopy(_SKELETONS[key])
        for i, init in enumerate(proto.graph.initializer):
            if init.name in state:
                proto.graph.initializer[i].CopyFrom(numpy_helper.from_array(state[init.name].numpy(), init.name))
        return proto
    proto = export_model(model, input_shape, opset)
    if _reusable(proto, state):
        _SKELETONS[key] = copy.deepcopy(proto)
    return proto


# --------------------------------------------------------------------------- quantization records
@dataclass
class ActQuant:
    """A layer input's quantizer: lecture multiplier ``s`` and zero point ``z`` (as the simulation
    computes them from the stored range) and the code range ``[qmin, qmax]``."""

    s: float
    z: int
    qmin: int
    qmax: int
    bits: int

    @classmethod
    def from_range(cls, lo: float, hi: float, spec) -> ActQuant:
        from compress.quant.affine import affine_params

        # the simulation's buffers are float32 scalars: same inputs, same (s, z)
        s, z = affine_params(torch.tensor(float(lo)), torch.tensor(float(hi)), spec.bits, spec.signed, spec.symmetric)
        qmin, qmax = spec.qrange
        return cls(float(s), int(z), qmin, qmax, spec.bits)

    @property
    def onnx_type(self) -> str | None:
        """'uint8' / 'int8' when the codes fit an 8-bit QuantizeLinear, else None (float ops)."""
        if self.qmin >= 0 and self.qmax <= 255 and 0 <= self.z <= 255:
            return "uint8"
        if self.qmin >= -128 and self.qmax <= 127 and -128 <= self.z <= 127:
            return "int8"
        return None

    @property
    def scale(self) -> np.float32:  # ONNX scale = 1 / lecture multiplier
        return np.float32(1.0) / np.float32(self.s)


@dataclass
class LayerQuant:
    """One layer's stored quantization: int8 weight codes (``q - z``, weight shape) with per
    output channel ONNX scales (``1/s``), or None when the weight cannot be int8 (``why``)."""

    codes: np.ndarray | None  # int8, weight shape
    w_scale: np.ndarray | None  # float32 (out,)
    act: ActQuant | None
    bits: int | None = None
    why: str = ""  # why the weight is not int8

    def widened(self, limit: int = 63) -> LayerQuant:
        """The same weights with codes multiplied by an integer ``K_c = limit // max|code_c|`` per
        output channel and scales divided by it: ``(q K)(s_w / K) = q s_w`` (to a float32 rounding
        of the scale).  The int32 bias unit ``s_x s_w / K`` gets K times finer, so ONNX Runtime's own
        bias rounding (module docstring, step 4) moves K times less.  ``limit`` 63 keeps
        ``255 * 63 * 2 < 2^15``: no int16 saturation in u8s8 kernels without VNNI."""
        if self.codes is None:
            return self
        out = self.codes.shape[0]
        amax = np.abs(self.codes.reshape(out, -1).astype(np.int32)).max(1)
        k = np.where(amax > 0, np.maximum(limit // np.maximum(amax, 1), 1), 1).astype(np.int32)  # (out,)
        if (k == 1).all():
            return self
        shape = (out,) + (1,) * (self.codes.ndim - 1)
        codes = (self.codes.astype(np.int32) * k.reshape(shape)).astype(np.int8)
        return LayerQuant(codes, (self.w_scale / k.astype(np.float32)).astype(np.float32), self.act, self.bits, self.why)


def layer_quant(qtensor, act: ActQuant | None) -> LayerQuant:
    """From a :class:`compress.quant.packing.QTensor` (stored codes, s, z)."""
    spec = qtensor.spec
    one_group = spec.granularity == "group" and qtensor.s.reshape(qtensor.s.shape[0], -1).shape[1] == 1  # = per channel
    if spec.granularity not in ("tensor", "channel") and not one_group:
        return LayerQuant(None, None, act, spec.bits, f"{spec.granularity} weight scales (no int8 kernel takes per-group scales)")
    if spec.bits > 8:
        return LayerQuant(None, None, act, spec.bits, f"{spec.bits}-bit weights do not fit int8")
    q = qtensor.q.detach().to(torch.float32)
    out = q.shape[0]
    s = qtensor.s.detach().to(torch.float32).reshape(-1)
    z = qtensor.z.detach().to(torch.float32).reshape(-1)
    if s.numel() == 1:
        s, z = s.expand(out), z.expand(out)
    shift = (q.reshape(out, -1) - z.reshape(out, 1)).reshape(q.shape)  # (out, ...) integer-valued
    if shift.min() < -128 or shift.max() > 127:
        return LayerQuant(None, None, act, spec.bits, "codes minus zero point leave the int8 range")
    scale = (1.0 / s).numpy().astype(np.float32)  # ONNX scale per output channel
    return LayerQuant(shift.to(torch.int8).numpy(), scale, act, spec.bits)


# --------------------------------------------------------------------------- graph surgery
@dataclass
class QDQReport:
    int8_layers: list[str] = field(default_factory=list)
    fp32_layers: dict[str, str] = field(default_factory=dict)  # layer -> why fp32
    fused_outputs: list[str] = field(default_factory=list)


def _layer_nodes(graph, layers) -> dict[str, object]:
    """{layer: Conv/Gemm node} via the weight initializer name ``<layer>.weight``."""
    out = {}
    for node in graph.node:
        if node.op_type in ("Conv", "Gemm") and len(node.input) > 1 and node.input[1].endswith(".weight"):
            name = node.input[1][: -len(".weight")]
            if name in layers:
                out[name] = node
    return out


def _gemm_ok(node) -> str | None:
    if node.op_type != "Gemm":
        return None
    att = {a.name: a for a in node.attribute}
    if "transB" not in att or att["transB"].i != 1 or ("transA" in att and att["transA"].i != 0):
        return "Gemm layout other than x W^T"
    if ("alpha" in att and att["alpha"].f != 1.0) or ("beta" in att and att["beta"].f != 1.0):
        return "Gemm with alpha/beta != 1"
    return None


def qdq_graph(fp32, layers: Mapping[str, LayerQuant], fuse_outputs: bool = True, int32_output_bias: bool = True):
    """Insert Q/DQ (module docstring) into the fp32 graph ``fp32`` (unchanged).  Returns
    (ModelProto, QDQReport).

    Biases: a layer whose output is requantized keeps its exact float bias (OpenVINO adds it
    after the int8 convolution in float: bit-for-bit the simulation's codes; ONNX Runtime's
    QLinearConv / QGemm fusion rounds it to int32 itself).  A layer with float output (the
    logits) gets, with ``int32_output_bias``, an int32 bias at scale ``s_x s_w`` (the form ONNX
    Runtime needs to fuse QGemm with float output; error <= half an accumulator unit on the
    logits, which is NOT small for coarse codes: 0.2 for W2A4), else its exact float bias
    (OpenVINO keeps the int8 kernel and adds it in float).
    """
    import onnx
    from onnx import helper, numpy_helper

    proto = copy.deepcopy(fp32)
    g = proto.graph
    inits = {i.name: i for i in g.initializer}
    nodes_by_layer = _layer_nodes(g, layers)
    report = QDQReport()
    for name in layers:
        if name not in nodes_by_layer:
            report.fp32_layers[name] = "no Conv/Gemm node with this weight in the exported graph"
    consumers: dict[str, list] = {}
    for node in g.node:
        for t in node.input:
            consumers.setdefault(t, []).append(node)
    graph_outputs = {o.name for o in g.output}
    new_inits, before, after = [], {}, {}  # node id -> nodes to insert before / after it

    def const(name, arr):
        new_inits.append(numpy_helper.from_array(np.asarray(arr), name))
        return name

    def qdq(tensor: str, tag: str, a: ActQuant, out: list, clip: bool = True) -> str:
        """nodes quantizing + dequantizing ``tensor`` with ``a`` appended to ``out``; returns the new
        tensor.  ``clip``: narrower codes than the 8-bit type get a Clip first (layer inputs)."""
        typ = a.onnx_type
        if typ is None:  # > 8-bit codes: the simulation's float arithmetic, op for op
            s, z = const(f"{tag}.s", np.float32(a.s)), const(f"{tag}.z", np.float32(a.z))
            lo, hi = const(f"{tag}.qmin", np.float32(a.qmin)), const(f"{tag}.qmax", np.float32(a.qmax))
            names = [f"{tag}.{k}" for k in ("mul", "add", "round", "clip", "sub", "div")]
            out += [helper.make_node("Mul", [tensor, s], [names[0]]), helper.make_node("Add", [names[0], z], [names[1]]),
                    helper.make_node("Round", [names[1]], [names[2]]), helper.make_node("Clip", [names[2], lo, hi], [names[3]]),
                    helper.make_node("Sub", [names[3], z], [names[4]]), helper.make_node("Div", [names[4], s], [names[5]])]
            return names[5]
        np_t = np.uint8 if typ == "uint8" else np.int8
        scale, zp = const(f"{tag}.scale", a.scale), const(f"{tag}.zp", np_t(a.z))
        src = tensor
        full = (0, 255) if typ == "uint8" else (-128, 127)
        if clip and (a.qmin, a.qmax) != full:  # narrower codes: clip to the representable range first
            lo = const(f"{tag}.lo", np.float32(a.qmin - a.z) * a.scale)
            hi = const(f"{tag}.hi", np.float32(a.qmax - a.z) * a.scale)
            out.append(helper.make_node("Clip", [src, lo, hi], [f"{tag}.clipped"]))
            src = f"{tag}.clipped"
        out.append(helper.make_node("QuantizeLinear", [src, scale, zp], [f"{tag}.q"]))
        out.append(helper.make_node("DequantizeLinear", [f"{tag}.q", scale, zp], [f"{tag}.dq"]))
        return f"{tag}.dq"

    # 1. which layers run int8 (int8 weights and 8-bit-typed input codes)
    int8 = {}
    for name, node in nodes_by_layer.items():
        lq = layers[name]
        why = lq.why or _gemm_ok(node)
        if lq.codes is None or why:
            report.fp32_layers[name] = why or "float weights"
        elif lq.act is None:
            report.fp32_layers[name] = "float activations (weights on the int grid, fp32 kernel)"
        elif lq.act.onnx_type is None:
            report.fp32_layers[name] = f"{lq.act.bits}-bit activations do not fit int8"
        else:
            int8[name] = node
    # 2. which int8 outputs are requantized with the next int8 layer's input quantizer, through which ops
    fused: dict[str, tuple[str, list]] = {}  # layer -> (next int8 layer, ops in between)
    if fuse_outputs:
        layer_of = {id(n): k for k, n in int8.items()}
        for name, node in int8.items():
            t, chain = node.output[0], []
            while len(consumers.get(t, [])) == 1 and t not in graph_outputs:
                c = consumers[t][0]
                if id(c) in layer_of:
                    fused[name] = (layer_of[id(c)], chain)
                    break
                if c.op_type not in _COMMUTING or len(c.output) != 1:
                    break
                chain.append(c)
                t = c.output[0]
    # 3. requantize each fused output with the next layer's (s, z) and keep the codes through the chain:
    #    Q/DQ after every op (same (s, z): the op maps grid values to grid values, so this is exact and
    #    ONNX Runtime runs MaxPool / Flatten on uint8), a ReLU is dropped when z is the code minimum
    #    (every dequantized value is then >= 0: ReLU is the identity on them)
    dropped: set[int] = set()

    def consumer_of(tensor: str):
        return consumers[tensor][0]

    def redirect(tensor: str, new: str) -> None:
        c = consumer_of(tensor)
        for i, inp in enumerate(c.input):
            if inp == tensor:
                c.input[i] = new
        consumers.setdefault(new, []).append(c)

    for name, (nxt, chain) in fused.items():
        node, act = int8[name], layers[nxt].act
        zmin = act.z == (0 if act.onnx_type == "uint8" else -128)
        post: list = []
        out = node.output[0]
        redirect(out, qdq(out, f"{name}.out", act, post, clip=False))
        after[id(node)] = post
        for i, op in enumerate(chain):
            if op.op_type == "Relu" and zmin:
                redirect(op.output[0], op.input[0])
                dropped.add(id(op))
            elif i < len(chain) - 1:  # the last op feeds the next layer's own input Q/DQ
                post = []
                redirect(op.output[0], qdq(op.output[0], f"{name}.chain{i}", act, post, clip=False))
                after[id(op)] = post
        report.fused_outputs.append(name)
    # 4. per layer: input quantizer, int8 weights, bias
    for name, node in nodes_by_layer.items():
        lq = layers[name]
        pre: list = []
        if lq.act is not None:
            node.input[0] = qdq(node.input[0], f"{name}.in", lq.act, pre)
        if name in int8:
            w = node.input[1]
            wq = const(f"{name}.weight_q", lq.codes)
            ws = const(f"{name}.weight_scale", lq.w_scale)
            wz = const(f"{name}.weight_zp", np.zeros(lq.w_scale.shape, np.int8))
            pre.append(helper.make_node("DequantizeLinear", [wq, ws, wz], [f"{name}.weight_dq"], axis=0))
            node.input[1] = f"{name}.weight_dq"
            inits.pop(w, None)
            if int32_output_bias and name not in fused and len(node.input) > 2 and node.input[2]:  # float output
                b = numpy_helper.to_array(inits.pop(node.input[2])).astype(np.float64)
                bs = (lq.act.scale * lq.w_scale).astype(np.float32)  # s_x s_w per channel (ONNX scales)
                bq = np.clip(np.round(b / bs.astype(np.float64)), -(2**31), 2**31 - 1).astype(np.int32)
                const(f"{name}.bias_q", bq)
                const(f"{name}.bias_scale", bs)
                const(f"{name}.bias_zp", np.zeros(bs.shape, np.int32))
                pre.append(helper.make_node("DequantizeLinear", [f"{name}.bias_q", f"{name}.bias_scale", f"{name}.bias_zp"],
                                            [f"{name}.bias_dq"], axis=0))
                node.input[2] = f"{name}.bias_dq"
            report.int8_layers.append(name)
        before[id(node)] = pre
    # 5. rebuild the node list in topological order, drop replaced initializers and identity ReLUs
    nodes = []
    for node in g.node:
        nodes += before.get(id(node), [])
        if id(node) not in dropped:
            nodes.append(node)
        nodes += after.get(id(node), [])
    del g.node[:]
    g.node.extend(nodes)
    keep = [i for i in g.initializer if i.name in inits]
    del g.initializer[:]
    g.initializer.extend(keep + new_inits)
    onnx.checker.check_model(proto)
    return proto, report


_CAST_TYPES = {"fp16": "FLOAT16", "bf16": "BFLOAT16", "fp8_e4m3": "FLOAT8E4M3FN", "fp8_e5m2": "FLOAT8E5M2"}


# fp8 formats: (significand bits p incl. the implicit one, smallest normal exponent, largest finite value, saturates)
_FP8 = {"fp8_e4m3": (4, -6, 448.0, True), "fp8_e5m2": (3, -14, 57344.0, False)}


def _fp8_round_nodes(src: str, dst: str, fmt: str, tag: str) -> tuple[list, list]:
    """Nodes and initializers computing ``dst = round_to_fmt(src)`` with fp32 arithmetic only: 7 elementwise
    ops for e4m3fn, 9 for e5m2.

    ONNX Runtime's fp8 ``Cast`` is exact but takes ~4 ns an element on the CPU (LeNet-5 at batch 256:
    7.3 ms against 2.3 ms for the fp32 graph, slower than eager).  Instead, Veltkamp's split with a
    magnitude-dependent shift:  b = max(|x|, 1.5 * 2^emin) * 2^(24-p),  g = x + b,  r = g + (x - g).
      |x| >= 1.5 * 2^emin  b = |x| K: for x > 0, g = RN((K + 1) x) and r is Veltkamp's split, x rounded
                           to p significant bits (fp32 round-to-nearest-even arithmetic; the ties land
                           on even codes because b / ulp is even wherever x is a tie);
      |x| <  1.5 * 2^emin  b is the constant 1.5 * 2^(emin+24-p), whose fp32 ulp is the fp8 subnormal
                           quantum 2^(emin-p+1): x + b rounds x onto the fixed grid of [0, 2^(emin+1)),
                           the subnormals and the lowest binade of normals;
      x < 0                the same b > 0 (no Sign op).  That and the shifted floor are outside Veltkamp's
                           theorem, so the form was checked exhaustively: every fp32 value of the binades
                           2^(emin-p-6) .. 2^17, both signs (1.26e9 values), equals torch's cast.  (The
                           shorter (x + b) - b is wrong for 232 of them, just below powers of two.)
    tests/deploy checks it on ONNX Runtime (ties, subnormals, saturation, overflow, binade edges).
      range  e4m3fn saturates: x is clipped to +-448 first (rounding and clipping commute there);
             e5m2 overflows: x is clipped to +-65536 (which rounds to +-65536, not a finite e5m2 value:
             57344 is the largest) and r * 2^112 * 2^-112 sends exactly +-65536 to +-inf (2^128
             overflows, 57344 * 2^112 does not; both scalings are exact otherwise).
    """
    import numpy as np
    from onnx import helper, numpy_helper

    p, emin, fmax, saturate = _FP8[fmt]
    consts = {"K": 2.0 ** (24 - p), "floor": 1.5 * 2.0 ** emin,
              "lo": -fmax if saturate else -65536.0, "hi": fmax if saturate else 65536.0}
    if not saturate:
        consts |= {"up": 2.0 ** 112, "down": 2.0 ** -112}
    inits = [numpy_helper.from_array(np.array(v, dtype=np.float32), f"{tag}.{k}") for k, v in consts.items()]
    c = {k: f"{tag}.{k}" for k in consts}
    t = lambda n: f"{tag}.{n}"  # noqa: E731
    nodes = [
        helper.make_node("Clip", [src, c["lo"], c["hi"]], [t("x")]),
        helper.make_node("Abs", [t("x")], [t("ax")]),
        helper.make_node("Max", [t("ax"), c["floor"]], [t("m")]),
        helper.make_node("Mul", [t("m"), c["K"]], [t("b")]),
        helper.make_node("Add", [t("x"), t("b")], [t("g")]),
        helper.make_node("Sub", [t("x"), t("g")], [t("d")]),
        helper.make_node("Add", [t("g"), t("d")], [dst if saturate else t("r")]),
    ]
    if not saturate:
        nodes += [helper.make_node("Mul", [t("r"), c["up"]], [t("big")]),
                  helper.make_node("Mul", [t("big"), c["down"]], [dst])]
    return nodes, inits


def round_inputs_graph(fp32, layer_names, fmt: str):
    """Each named layer's input rounded to ``fmt`` (round to nearest even, as torch's cast).
    fp16 / bf16: ``Cast(fmt) -> Cast(float)``.  fp8: the same rounding in fp32 arithmetic
    (:func:`_fp8_round_nodes`; e4m3fn saturates at 448, e5m2 overflows to inf), because ONNX
    Runtime's fp8 Cast is a slow scalar loop.  Returns the new ModelProto.

    Measured (tests/deploy/test_deploy.py): ONNX Runtime's Cast pairs give torch's values bit for
    bit for fp16 and bf16, and so does the fp8 arithmetic form for e4m3fn and e5m2 (ties,
    subnormals, saturation and overflow included).  OpenVINO folds f32->f16->f32 pairs away and
    rounds fp8 differently; its bf16 model outputs differ by ~1 % (graphs.py excludes OpenVINO)."""
    import onnx
    from onnx import TensorProto, helper

    if fmt not in _CAST_TYPES:
        raise ValueError(f"no ONNX cast for float format {fmt!r}; allowed: {', '.join(_CAST_TYPES)}")
    proto = copy.deepcopy(fp32)
    g = proto.graph
    nodes_by_layer = _layer_nodes(g, set(layer_names))
    nodes = []
    for node in g.node:
        name = next((k for k, n in nodes_by_layer.items() if n is node), None)
        if name is not None:
            if fmt in _FP8:
                new, inits = _fp8_round_nodes(node.input[0], f"{name}.in_rounded", fmt, f"{name}.{fmt}")
                nodes.extend(new)
                g.initializer.extend(inits)
            else:
                to = getattr(TensorProto, _CAST_TYPES[fmt])
                nodes.append(helper.make_node("Cast", [node.input[0]], [f"{name}.in_lowp"], to=to))
                nodes.append(helper.make_node("Cast", [f"{name}.in_lowp"], [f"{name}.in_rounded"], to=TensorProto.FLOAT))
            node.input[0] = f"{name}.in_rounded"
        nodes.append(node)
    del g.node[:]
    g.node.extend(nodes)
    missing = sorted(set(layer_names) - set(nodes_by_layer))
    if missing:
        raise ValueError(f"layers {missing} have no Conv/Gemm node in the exported graph; cannot round their inputs")
    onnx.checker.check_model(proto)
    return proto


__all__ = [
    "OPSET",
    "ActQuant",
    "LayerQuant",
    "QDQReport",
    "export_model",
    "fp32_graph",
    "layer_quant",
    "qdq_graph",
    "round_inputs_graph",
]
