"""Engines: who runs a deploy graph, and how.

A :class:`DeployGraph` is what a variant's artifact becomes at load (see compress/deploy/graphs.py):

    kind "onnx"          an in-memory ONNX ModelProto (fp32, or int8 QDQ built from stored codes)
    kind "torch"         an eager nn.Module (the artifact decoded as today)
    kind "torch-sparse"  an nn.Module whose sparse Linear layers multiply with torch.sparse CSR
    kind "pt2"           a saved torch.export int8 program (PT2E, X86InductorQuantizer)

An :class:`Engine` accepts some kinds and turns a graph into a Predictor: a callable
``(B, C, H, W) float CPU tensor -> (B, classes) logits tensor`` with a ``description`` (the
``runtime`` column) and ``low_precision_ops()`` (which kernels actually ran in int8, read from
the engine's own optimised graph, so "my int8 model is not faster" can be explained).

Registered engines (one line each in ``ENGINES``; an engine that is not installed is skipped
with a reason, never a crash):

    torch-eager    PyTorch eager                       kinds: torch
    torch-sparse   PyTorch eager, CSR sparse Linear     kinds: torch-sparse
    onnxruntime    ONNX Runtime CPUExecutionProvider    kinds: onnx
    openvino       OpenVINO CPU (precision hint f32)    kinds: onnx
    pt2e           PT2E int8 program, torch.compile     kinds: pt2
    pt2e-aoti      PT2E int8 program, AOTInductor       kinds: pt2 (a static package per batch size, each checked)

Threads: every engine uses ``torch.get_num_threads()`` intra-op threads (ONNX Runtime inter-op 1,
OpenVINO one stream), so runtimes are compared with the same cores.
"""
from __future__ import annotations

import importlib.util
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

GRAPH_KINDS = ("onnx", "torch", "torch-sparse", "pt2")


@dataclass
class DeployGraph:
    """One way to run a variant: what an engine receives."""

    kind: str  # one of GRAPH_KINDS
    payload: Any  # onnx.ModelProto | nn.Module | Path (pt2 program)
    label: str  # what was built, e.g. "int8 QDQ from the stored 4-bit codes"
    precision: str = "fp32"  # fp32 | int8 | mixed (some layers int8, some fp32)
    notes: list[str] = field(default_factory=list)  # what does not run in low precision, and why
    exclude: dict[str, str] = field(default_factory=dict)  # engine -> why it must not run this graph

    def __post_init__(self):
        if self.kind not in GRAPH_KINDS:
            raise ValueError(f"graph kind {self.kind!r} is unknown; allowed: {', '.join(GRAPH_KINDS)}")


class EnginePredictor:
    """A built graph on one engine: ``(B, C, H, W) -> (B, classes)`` logits, CPU float32."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor], description: str, engine: str,
                 ops: Callable[[], dict] | None = None, profile: Callable[[torch.Tensor, int], list[dict]] | None = None):
        self._fn = fn
        self.description = description
        self.engine = engine
        self._ops = ops
        self._profile = profile
        self.graph: DeployGraph | None = None  # set by compress.deploy.graphs.deploy_predictors

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self._fn(x)

    def low_precision_ops(self) -> dict:
        """``{"int8": {op: count}, "fp32": {op: count}, "source": ...}`` of the kernels the engine
        chose (compute ops only: conv / matmul / gemm), or ``{}`` when the engine cannot say."""
        return self._ops() if self._ops is not None else {}

    def profile(self, x: torch.Tensor, runs: int = 20) -> list[dict]:
        """Per-op time of ``runs`` calls on ``x`` from the engine's own profiler, slowest first:
        ``[{"op", "kernel", "ms_per_call", "share"}]`` (``[]`` when the engine has none)."""
        return self._profile(x, runs) if self._profile is not None else []


@dataclass
class Engine:
    name: str
    kinds: tuple[str, ...]
    check: Callable[[], str | None]  # None: usable; else the reason it is not
    build: Callable[[DeployGraph], EnginePredictor]
    doc: str = ""
    superseded_by: str = ""  # left out of the default engine list when that engine is usable (named: timed)

    def accepts(self, graph: DeployGraph) -> str | None:
        """None if this engine runs ``graph``; else the reason it does not."""
        if graph.kind not in self.kinds:
            return f"{self.name} runs {'/'.join(self.kinds)} graphs, not {graph.kind}"
        return graph.exclude.get(self.name)


ENGINES: dict[str, Engine] = {}


def register_engine(engine: Engine) -> Engine:
    if engine.name in ENGINES and ENGINES[engine.name] is not engine:
        raise RuntimeError(f"engine {engine.name!r} registered twice")
    ENGINES[engine.name] = engine
    return engine


def get_engine(name: str, key: str = "evaluate.runtimes") -> Engine:
    if name not in ENGINES:
        raise ValueError(f"{key}: runtime {name!r} is unknown; allowed: {', '.join(ENGINES)}")
    return ENGINES[name]


def engine_status(name: str) -> str | None:
    """None when the engine can run here, else why not (e.g. the package is not installed)."""
    return get_engine(name).check()


def resolve_runtimes(names: list[str] | None = None, key: str = "evaluate.runtimes") -> tuple[list[Engine], dict[str, str]]:
    """(usable engines in the given order, {skipped name: reason}).  ``None`` = every registered
    engine that is installed, except one whose ``superseded_by`` engine is usable too (``pt2e``:
    ``pt2e-aoti`` runs the same program on the same kernels without its per-call overhead); a
    list names engines explicitly and is honoured.  An unknown name is a one-line ValueError
    naming ``key``."""
    if names is not None and (isinstance(names, str) or not all(isinstance(n, str) for n in names)):
        raise ValueError(f"{key} = {names!r} must be a list of runtime names ({', '.join(ENGINES)}) or null (all installed)")
    chosen = [get_engine(n, key) for n in (names if names is not None else list(ENGINES))]
    usable, skipped = [], {}
    for e in chosen:
        why = e.check()
        if why is None:
            usable.append(e)
        else:
            skipped[e.name] = why
    if names is None:
        ok = {e.name for e in usable}
        for e in [e for e in usable if e.superseded_by in ok]:
            usable.remove(e)
            skipped[e.name] = (f"left out by default: {e.superseded_by} runs the same graphs on the same kernels and was faster "
                               f"at every batch size measured; name {e.name} in {key} to time it too")
    return usable, skipped


def _missing(module: str, what: str) -> Callable[[], str | None]:
    def check() -> str | None:
        if importlib.util.find_spec(module) is None:
            return f"{what} is not installed (pip install {module})"
        return None

    return check


def _threads() -> int:
    return torch.get_num_threads()


# --------------------------------------------------------------------------- torch eager / sparse
def _module_fn(module: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    module.eval()

    @torch.inference_mode()
    def run(x: torch.Tensor) -> torch.Tensor:
        return module(x)

    return run


def _module_ops(module: nn.Module, int8: bool = False) -> Callable[[], dict]:
    def ops() -> dict:
        c = Counter(type(m).__name__ for m in module.modules() if isinstance(m, (nn.Conv2d, nn.Linear))
                    or type(m).__name__ in ("MonarchLinear", "CSRLinear"))
        return {"int8": {}, "fp32": dict(c), "source": "module types (eager runs fp32 kernels)"}

    return ops


def _build_eager(g: DeployGraph) -> EnginePredictor:
    return EnginePredictor(_module_fn(g.payload), f"PyTorch {torch.__version__.split('+')[0]} eager, {g.label}", "torch-eager",
                           _module_ops(g.payload))


def _build_sparse(g: DeployGraph) -> EnginePredictor:
    return EnginePredictor(_module_fn(g.payload), f"PyTorch {torch.__version__.split('+')[0]} eager, {g.label}", "torch-sparse",
                           _module_ops(g.payload))


register_engine(Engine("torch-eager", ("torch",), lambda: None, _build_eager, "PyTorch eager (the artifact decoded as is)"))
register_engine(Engine("torch-sparse", ("torch-sparse",), lambda: None, _build_sparse,
                       "PyTorch eager with torch.sparse CSR matmuls for highly sparse Linear layers"))


# --------------------------------------------------------------------------- ONNX Runtime
_COMPUTE = ("Conv", "Gemm", "MatMul", "QLinearConv", "QGemm", "QLinearMatMul", "MatMulInteger", "ConvInteger",
            "MatMulIntegerToFloat", "DynamicQuantizeMatMul", "FusedConv", "FusedGemm", "FusedMatMul", "NchwcConv",
            "SparseToDenseMatMul")
_ORT_INT8 = ("QLinearConv", "QGemm", "QLinearMatMul", "MatMulInteger", "ConvInteger", "MatMulIntegerToFloat",
             "DynamicQuantizeMatMul")


def ort_options():
    """ONNX Runtime session options of every engine session: the shared thread count, one inter-op
    thread, and no spin-waiting.  Measured (LeNet-5, batch 256, 2 cores): with ORT's default spinning,
    its idle pool threads keep a core busy after each call, and PyTorch eager timed right after ran
    16.7 ms instead of 9.3 (1.8x); without spinning, eager after ORT equals eager alone and ORT's
    own latency is unchanged (0.033 ms at batch 1, 3.6 ms at batch 256, both ways)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = _threads()
    so.inter_op_num_threads = 1
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.log_severity_level = 3
    return so


def ort_session(model_bytes: bytes, optimized_path: str | None = None):
    import onnxruntime as ort

    so = ort_options()
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if optimized_path:
        so.optimized_model_filepath = optimized_path
    return ort.InferenceSession(model_bytes, so, providers=["CPUExecutionProvider"])


def _ort_ops_of(optimized_path: str) -> dict:
    import onnx

    g = onnx.load(optimized_path).graph
    c = Counter(n.op_type for n in g.node if n.op_type in _COMPUTE)
    return {"int8": {k: v for k, v in c.items() if k in _ORT_INT8},
            "fp32": {k: v for k, v in c.items() if k not in _ORT_INT8}, "source": "ONNX Runtime optimized graph"}


def ort_kernel_ops(model_bytes: bytes) -> dict:
    """Compute ops of the graph ONNX Runtime actually runs (its optimised model, after the QDQ
    fusions): int8 kernels (QLinearConv, QGemm, ...) vs fp32 ones (Conv, Gemm, FusedConv, ...)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "optimized.onnx")
        ort_session(model_bytes, path)
        return _ort_ops_of(path)


_PROFILE_WARMUP = 20


def _shares(rows: dict[tuple[str, str], float], runs: int) -> list[dict]:
    total = sum(rows.values()) or 1.0
    out = [{"op": op, "kernel": k, "ms_per_call": t / runs, "share": t / total} for (op, k), t in rows.items()]
    return sorted(out, key=lambda r: -r["ms_per_call"])


def ort_profile(model_bytes: bytes, x: torch.Tensor, runs: int = 20) -> list[dict]:
    """ONNX Runtime's profiler: kernel time per op type of the optimised graph (QLinearConv, ...)."""
    import json

    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        so = ort_options()
        so.enable_profiling = True
        so.profile_file_prefix = str(Path(tmp) / "ort")
        sess = ort.InferenceSession(model_bytes, so, providers=["CPUExecutionProvider"])
        feed = {sess.get_inputs()[0].name: x.detach().contiguous().numpy()}
        for _ in range(_PROFILE_WARMUP + runs):
            sess.run(None, feed)
        events = json.loads(Path(sess.end_profiling()).read_text())
    # only the kernels inside the last `runs` model runs (the warm-up runs are dropped)
    windows = sorted((e["ts"], e["ts"] + e["dur"]) for e in events if e.get("name") == "model_run")[-runs:]
    rows: Counter = Counter()
    for e in events:
        if e.get("cat") == "Node" and str(e.get("name", "")).endswith("_kernel_time"):
            if any(a <= e["ts"] <= b for a, b in windows):
                rows[(e["args"].get("op_name", "?"), e["args"].get("provider", ""))] += e["dur"] / 1e3  # us -> ms
    return _shares(rows, runs)


def _build_ort(g: DeployGraph) -> EnginePredictor:
    import onnxruntime as ort

    data = g.payload.SerializeToString()
    with tempfile.TemporaryDirectory() as tmp:  # the session also writes its optimised graph: the kernels it runs
        path = str(Path(tmp) / "optimized.onnx")
        sess = ort_session(data, path)
        ops = _ort_ops_of(path)
    name = sess.get_inputs()[0].name

    def run(x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(sess.run(None, {name: x.detach().contiguous().numpy()})[0])

    return EnginePredictor(run, f"ONNX Runtime {ort.__version__} CPU, {g.label}", "onnxruntime", lambda: ops,
                           lambda x, runs: ort_profile(data, x, runs))


register_engine(Engine("onnxruntime", ("onnx",), _missing("onnxruntime", "onnxruntime"), _build_ort,
                       "ONNX Runtime CPUExecutionProvider, intra-op threads = torch threads, inter-op 1"))


# --------------------------------------------------------------------------- OpenVINO
_OV_CORE = None


def _ov_core():
    global _OV_CORE
    if _OV_CORE is None:
        import openvino as ov

        _OV_CORE = ov.Core()
    return _OV_CORE


def ov_config() -> dict:
    """f32 precision hint (on CPUs with bf16 OpenVINO otherwise silently runs fp32 models in bf16),
    threads pinned to torch's, one stream, latency mode.  Int8 (FakeQuantize) parts still run on
    int8 kernels under this hint."""
    return {"INFERENCE_NUM_THREADS": _threads(), "INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY",
            "NUM_STREAMS": 1}


def ov_kernel_ops(compiled) -> dict:
    """Compute layers of OpenVINO's runtime model and the precision each ran in (``runtimePrecision``)."""
    c: dict[str, Counter] = {"int8": Counter(), "fp32": Counter()}
    for op in compiled.get_runtime_model().get_ops():
        rt = op.get_rt_info()
        layer = rt["layerType"].astype(str) if "layerType" in rt else op.get_type_name()
        if not any(k in layer for k in ("Convolution", "FullyConnected", "MatMul", "Deconvolution")):
            continue
        prec = rt["runtimePrecision"].astype(str) if "runtimePrecision" in rt else "?"
        c["int8" if prec.lower() in ("i8", "u8") else "fp32"][f"{layer}({prec})"] += 1
    return {"int8": dict(c["int8"]), "fp32": dict(c["fp32"]), "source": "OpenVINO runtime model (runtimePrecision)"}


def ov_profile(model_bytes: bytes, x: torch.Tensor, runs: int = 20) -> list[dict]:
    """OpenVINO's per-layer performance counters: real time per (layer type, kernel), e.g.
    ``Convolution brgconv_avx512_I8``."""
    core = _ov_core()
    compiled = core.compile_model(core.read_model(model_bytes), "CPU", {**ov_config(), "PERF_COUNT": True})
    req = compiled.create_infer_request()
    rows: Counter = Counter()
    feed = {0: x.detach().contiguous().numpy()}
    for _ in range(_PROFILE_WARMUP):  # the first calls still JIT and pack weights
        req.infer(feed)
    for _ in range(runs):
        req.infer(feed)
        for p in req.profiling_info:
            if p.real_time.total_seconds() > 0:
                rows[(p.node_type, p.exec_type)] += p.real_time.total_seconds() * 1e3
    return _shares(rows, runs)


def _build_ov(g: DeployGraph) -> EnginePredictor:
    import openvino as ov

    core = _ov_core()
    data = g.payload.SerializeToString()
    compiled = core.compile_model(core.read_model(data), "CPU", ov_config())
    req = compiled.create_infer_request()

    def run(x: torch.Tensor) -> torch.Tensor:
        req.infer({0: x.detach().contiguous().numpy()}, share_inputs=True)
        return torch.from_numpy(np.array(req.get_output_tensor(0).data, copy=True))

    return EnginePredictor(run, f"OpenVINO {ov.__version__.split('-')[0]} CPU (f32 hint), {g.label}", "openvino",
                           lambda: ov_kernel_ops(compiled), lambda x, runs: ov_profile(data, x, runs))


register_engine(Engine("openvino", ("onnx",), _missing("openvino", "openvino"), _build_ov,
                       "OpenVINO CPU plugin from the same ONNX graph; INFERENCE_PRECISION_HINT f32, threads pinned"))


# --------------------------------------------------------------------------- PT2E + AOTInductor
def _pt2e_check() -> str | None:
    import shutil

    if importlib.util.find_spec("torchao") is None:
        return "torchao is not installed (the PT2E int8 programs use its quantized_decomposed ops)"
    if shutil.which("c++") is None and shutil.which("g++") is None:
        return "no C++ compiler on PATH (inductor compiles the program to C++)"
    return None


def _aoti_check() -> str | None:
    if not hasattr(torch._inductor, "aoti_compile_and_package"):
        return f"torch {torch.__version__} has no AOTInductor packaging"
    return _pt2e_check()


def aoti_cache_dir() -> Path:
    """Where compiled AOTInductor packages are kept: $COMPRESS_AOTI_CACHE, else <tmp>/compress-aoti."""
    import os

    return Path(os.environ.get("COMPRESS_AOTI_CACHE", Path(tempfile.gettempdir()) / "compress-aoti"))


def aoti_package(program: str | Path, cache_dir: str | Path | None = None, batch: int | None = None) -> Path:
    """Compile a saved PT2E int8 program ahead of time (inductor freezing: oneDNN int8 kernels) into an
    AOTInductor ``.pt2`` package.  ``batch``: re-export the program with that static batch size first
    (measured on torch 2.14.1: with the program's dynamic batch axis, freezing makes LeNet-5's int8
    qconv package compute other logits -- max |diff| 4.2 vs logit std 1.6 -- while static-shape
    packages of the same program match it to 5e-7).  Packages are cached by the program's bytes, the
    batch size and the torch version, so the compile (tens of seconds on 2 cores) is paid once per
    artifact and batch size, not per evaluate run."""
    import hashlib
    import os

    _register_x86_int8_passes()
    program = Path(program)
    tag = "dyn" if batch is None else f"b{int(batch)}"
    key = hashlib.sha256(program.read_bytes() + f"{torch.__version__}|aoti-v3|{tag}".encode()).hexdigest()[:20]
    cache = Path(cache_dir) if cache_dir is not None else aoti_cache_dir()
    pkg = cache / f"{program.stem}-{tag}-{key}.pt2"
    if not pkg.exists():
        cache.mkdir(parents=True, exist_ok=True)
        ep = torch.export.load(str(program))
        if batch is not None:
            ep = torch.export.export(ep.module(), (_program_input(ep, int(batch)),))
        tmp = cache / f".{pkg.name}.{os.getpid()}.tmp.pt2"
        with torch.no_grad():  # freezing under no_grad: the int8 weight-prepack / qlinear / qconv fusions apply
            torch._inductor.aoti_compile_and_package(ep, package_path=str(tmp),
                                                     inductor_configs={"freezing": True, "fx_graph_cache": False})
        os.replace(tmp, pkg)
    return pkg


def _register_x86_int8_passes() -> None:
    """Importing torchao's X86InductorQuantizer module registers inductor's int8 fusion passes
    (dq -> conv/linear -> q  =>  oneDNN qconv / qlinear).  A process that only LOADS a PT2E program
    never imports it, and inductor then silently compiles fp32 GEMMs on dequantized weights
    (measured: MLP 784-1024-1024-10 at batch 256, 23 ms instead of 3 ms; pytorch/ao#4566)."""
    import torchao.quantization.pt2e.quantize_pt2e
    import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer  # noqa: F401  registers the fusion passes


def aoti_package_ops(pkg: str | Path) -> dict:
    """The kernels an AOTInductor package calls (its generated wrapper): oneDNN int8
    (``_qlinear_pointwise``, ``_qconv..._pointwise``) vs fp32 (addmm, convolution, ...)."""
    import re
    import zipfile

    c = {"int8": Counter(), "fp32": Counter()}
    with zipfile.ZipFile(str(pkg)) as z:
        for n in z.namelist():
            if n.endswith("wrapper.cpp"):
                for call in re.findall(r"aoti_torch_cpu_(\w+)\(", z.read(n).decode("utf8", "ignore")):
                    if "qlinear" in call or "qconv" in call:
                        c["int8"][call.strip("_")] += 1
                    elif any(k in call for k in ("addmm", "mm_out", "convolution", "linear", "bmm")):
                        c["fp32"][call.strip("_")] += 1
    return {"int8": dict(c["int8"]), "fp32": dict(c["fp32"]), "source": "AOTInductor package wrapper (kernel calls)"}


def _program_input(ep, batch: int) -> torch.Tensor:
    """A seeded input batch of the loaded program ``ep`` (its user input's shape, ``batch`` rows)."""
    sig = ep.graph_signature
    shape = next(n.meta["val"].shape for n in ep.graph.nodes if n.op == "placeholder" and n.name not in sig.inputs_to_parameters
                 and n.name not in sig.inputs_to_buffers and n.name not in sig.inputs_to_lifted_tensor_constants)
    return torch.randn((batch, *[int(d) for d in shape[1:]]), generator=torch.Generator().manual_seed(0))


def _program_probe(program: Path, batch: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """(input, logits) of the saved program run as is (its reference semantics) on a seeded batch."""
    _register_x86_int8_passes()
    ep = torch.export.load(str(program))
    x = _program_input(ep, batch)
    with torch.no_grad():
        return x, ep.module()(x)


def _check_same(name: str, out: torch.Tensor, ref: torch.Tensor) -> None:
    """An int8 compilation must compute the program's function: max |diff| <= 0.1 std(logits)."""
    diff, std = float((out - ref).abs().max()), float(ref.std())
    if not diff <= 0.1 * std + 1e-6:
        raise RuntimeError(f"{name} computes other logits than the PT2E program (max |diff| {diff:.3g} vs logit std {std:.3g}); "
                           "measured on torch 2.14.1: dynamic-batch AOTInductor packages with int8 qconv give wrong results")


def _build_pt2e_aoti(g: DeployGraph) -> EnginePredictor:
    """One static-batch AOTInductor package per batch size (see :func:`aoti_package`), compiled or
    taken from the cache at the first call with that batch and checked there against the program's
    own logits on that very input; batch 1 is built and checked here."""
    _register_x86_int8_passes()
    program = torch.export.load(str(g.payload))
    reference = program.module()
    runners: dict[tuple[int, ...], object] = {}
    pkgs: list[Path] = []

    def run(x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous()
        shape = tuple(x.shape)
        with torch.no_grad():
            if shape not in runners:
                pkg = aoti_package(g.payload, batch=shape[0])
                runner = torch._inductor.aoti_load_package(str(pkg))
                _check_same(f"the AOTInductor package (batch {shape[0]})", runner(x), reference(x))
                runners[shape] = runner
                pkgs.append(pkg)
            return runners[shape](x)

    run(_program_input(program, 1))
    return EnginePredictor(run, f"PT2E int8 AOTInductor package per batch size (inductor freezing, oneDNN), torch "
                                f"{torch.__version__.split('+')[0]}, {g.label}", "pt2e-aoti", lambda: aoti_package_ops(pkgs[0]))


def _build_pt2e(g: DeployGraph) -> EnginePredictor:
    """torch.compile (inductor, freezing) of the saved program: one static-shape graph per batch size,
    compiled at its first call.  Which int8 fusions inductor made comes from its counters."""
    from torch._dynamo.utils import counters

    from compress.deploy.pt2e import Pt2eInductorPredictor

    _register_x86_int8_passes()
    pred = Pt2eInductorPredictor(Path(g.payload))
    fused: dict[str, Counter] = {"int8": Counter(), "fp32": Counter()}
    seen: set[tuple[int, ...]] = set()

    def run(x: torch.Tensor) -> torch.Tensor:
        shape = tuple(x.shape)
        if shape in seen:
            return pred(x)
        before = {k: dict(v) for k, v in counters.items()}
        out = pred(x)  # compiles this shape
        seen.add(shape)
        for k, v in counters["inductor"].items():
            d = v - before.get("inductor", {}).get(k, 0)
            if d > 0 and k.endswith("_lower_count") and ("qlinear" in k or "qconv" in k):
                fused["int8"][k.removesuffix("_lower_count")] = max(fused["int8"][k.removesuffix("_lower_count")], d)
        for k, v in counters["aten_mm_info"].items():
            d = v - before.get("aten_mm_info", {}).get(k, 0)
            if d > 0:
                fused["fp32"][k.split("_")[0]] = max(fused["fp32"][k.split("_")[0]], d)
        return out

    x, ref = _program_probe(g.payload, batch=1)  # batch 1: a shape the latency measurement compiles anyway
    _check_same("torch.compile of the program", run(x), ref)
    return EnginePredictor(run, f"PT2E int8 + torch.compile (inductor, freezing: oneDNN int8), torch "
                                f"{torch.__version__.split('+')[0]}, {g.label}", "pt2e",
                           lambda: {"int8": dict(fused["int8"]), "fp32": dict(fused["fp32"]),
                                    "source": "inductor counters (int8 fusions lowered; fp32 mm calls)"})


register_engine(Engine("pt2e", ("pt2",), _pt2e_check, _build_pt2e,
                       "PT2E int8 program compiled by torch.compile (inductor freezing: oneDNN int8 kernels)",
                       superseded_by="pt2e-aoti"))  # measured, LeNet-5 W8A8: 0.39 vs 0.16 ms at batch 1, 2.66 vs 2.32 at 256
register_engine(Engine("pt2e-aoti", ("pt2",), _aoti_check, _build_pt2e_aoti,
                       "PT2E int8 program compiled ahead of time by AOTInductor (no Python call overhead), one static "
                       "package per batch size, each checked against the program's own logits at its first call"))
