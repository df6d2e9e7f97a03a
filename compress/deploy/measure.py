"""Measure a variant on every enabled runtime: accuracy (deterministic) and latency (adaptive).

    res = measure_variant(folder, manifest, test_x, test_y, runtimes=None, cfg=MeasureConfig())
    res["runtimes"]["openvino"] -> {"accuracy", "latency_ms_b1", "latency_ms_b256", "description", "ops", ...}
    res["fastest"] -> {"b1": "openvino", "b256": "onnxruntime"}

Cost control (the evaluate stage measures ~90 variants on 2 cores):
  * the accuracy pass runs the test set in batches of ``cfg.batch_size`` (256, the padded last
    batch included) and times every call after ``cfg.warmup``: with 256 = a latency batch size,
    the median of those calls IS the batch-256 latency (no separate b256 loop);
  * batch 1 (and any batch size not covered) uses :func:`adaptive_latency`: warm-up, then at
    least ``min_repeats`` calls, stopping once ``budget_s`` is spent and the running median
    moved less than ``rel_tol`` over the last quarter of the calls (hard stop: ``max_repeats``
    calls or 4 x ``budget_s``).
Accuracy is a function of the artifact and the engine only: repeated runs give the same
number (engines run single-stream; ONNX Runtime / OpenVINO kernels are deterministic for a fixed
thread count).  The fastest runtime is a latency fact and goes only into latency outputs.

Speed-ups (:func:`speedups`) compare a variant with the fp32 reference of its architecture:
its PyTorch eager latency and its fastest fp32 runtime, timed right after the variant
(:class:`ReferenceClock`: a shared CPU's speed drifts during a run).
"""
from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from compress.deploy.engines import Engine, EnginePredictor, resolve_runtimes
from compress.deploy.graphs import build_graphs, deploy_predictors
from compress.variants import Form, Manifest

FP32_FORMS = ("torch-eager", "torch-compile", "onnxruntime-fp32")


@dataclass
class MeasureConfig:
    """Knobs of the measurement (``evaluate.*`` in params.yaml); validates itself."""

    batch_size: int = 256  # accuracy batch; its per-call times are the batch-256 latency
    latency_batches: tuple[int, ...] = (1, 256)
    warmup: int = 3
    min_repeats: int = 5
    max_repeats: int = 300
    budget_s: float = 0.03  # per (runtime, batch size) latency measurement
    rel_tol: float = 0.05
    ops: bool = True  # record which kernels ran in low precision (one extra engine build for ONNX Runtime)
    sim: bool = True  # also the simulated form's accuracy (accuracy_sim)

    def __post_init__(self):
        checks = [("batch_size", self.batch_size >= 1, ">= 1"), ("warmup", self.warmup >= 0, ">= 0"),
                  ("min_repeats", self.min_repeats >= 1, ">= 1"), ("max_repeats", self.max_repeats >= self.min_repeats,
                                                                 ">= min_repeats"),
                  ("budget_s", self.budget_s > 0, "> 0"), ("rel_tol", 0 < self.rel_tol < 1, "in (0, 1)"),
                  ("latency_batches", len(self.latency_batches) > 0 and all(int(b) >= 1 for b in self.latency_batches),
                   "a non-empty list of batch sizes >= 1")]
        for key, ok, allowed in checks:
            if not ok:
                raise ValueError(f"evaluate.{key} = {getattr(self, key)!r} is invalid; allowed: {allowed}")

    @classmethod
    def from_section(cls, section, **over) -> MeasureConfig:
        """From an ``evaluate`` params section (any object with some of these attributes)."""
        kw = {k: getattr(section, k) for k in cls.__dataclass_fields__ if hasattr(section, k)}
        if "latency_batches" in kw:
            kw["latency_batches"] = tuple(kw["latency_batches"])
        return cls(**{**kw, **over})


def _timed(predict: Callable, x: torch.Tensor) -> tuple[torch.Tensor, float]:
    t0 = time.perf_counter()
    out = predict(x)
    return out, (time.perf_counter() - t0) * 1e3


def _summary(times: list[float], seconds: float) -> dict:
    s = sorted(times)
    q = lambda f: s[min(len(s) - 1, int(f * len(s)))]
    return {"median_ms": statistics.median(s), "p10_ms": q(0.1), "p90_ms": q(0.9), "repeats": len(s),
            "threads": torch.get_num_threads(), "seconds": round(seconds, 4)}


def adaptive_latency(predict: Callable[[torch.Tensor], torch.Tensor], example: torch.Tensor, warmup: int = 3,
                     min_repeats: int = 5, max_repeats: int = 300, budget_s: float = 0.05, rel_tol: float = 0.05) -> dict:
    """Median wall-clock ms of ``predict(example)``: warm-up, then repeats until the budget is spent
    and the median is stable (module docstring).  Returns median / p10 / p90 / repeats / threads."""
    t_start = time.perf_counter()
    with torch.inference_mode():
        for _ in range(warmup):
            predict(example)
        times: list[float] = []
        t0 = time.perf_counter()
        while len(times) < max_repeats:
            times.append(_timed(predict, example)[1])
            n, spent = len(times), time.perf_counter() - t0
            if n < min_repeats or spent < budget_s:
                continue
            if spent >= 4 * budget_s:
                break
            prev = statistics.median(times[: n - max(1, n // 4)])
            if abs(statistics.median(times) - prev) <= rel_tol * prev:
                break
    return _summary(times, time.perf_counter() - t_start)


def accuracy_timed(predict: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, y: torch.Tensor, batch_size: int,
                   warmup: int = 3) -> tuple[float, list[float]]:
    """(accuracy, ms of each call after the first ``warmup``) over ``x`` in full batches of
    ``batch_size`` (the last one zero-padded: one static shape, as compress.evaluate.predict_all)."""
    correct, times = 0, []
    with torch.inference_mode():
        for k, i in enumerate(range(0, len(x), batch_size)):
            xb = x[i : i + batch_size]
            n = len(xb)
            if n < batch_size:
                xb = torch.cat([xb, xb.new_zeros((batch_size - n, *xb.shape[1:]))])
            out, ms = _timed(predict, xb.contiguous())
            if k >= warmup:
                times.append(ms)
            correct += int((torch.as_tensor(out)[:n].argmax(1) == y[i : i + n]).sum())
    return correct / max(len(x), 1), times


def _example(x: torch.Tensor, b: int) -> torch.Tensor:
    ex = x[:b]
    if len(ex) < b:  # tiny test sets: repeat to reach the batch size
        ex = ex.repeat((b + len(ex) - 1) // len(ex), 1, 1, 1)[:b]
    return ex.contiguous().clone()


def measure_predictor(predict: EnginePredictor, test_x: torch.Tensor, test_y: torch.Tensor, cfg: MeasureConfig,
                      accuracy: bool = True) -> dict:
    """Accuracy and latency of one built predictor: ``{"accuracy", "latency_ms_b<B>", "latency": {B: stats}}``."""
    out: dict = {}
    lat: dict[int, dict] = {}
    if accuracy:
        t0 = time.perf_counter()
        acc, times = accuracy_timed(predict, test_x, test_y, cfg.batch_size, cfg.warmup)
        out["accuracy"] = acc
        if cfg.batch_size in cfg.latency_batches and len(times) >= cfg.min_repeats:
            lat[cfg.batch_size] = {**_summary(times, time.perf_counter() - t0), "source": "accuracy pass"}
    for b in cfg.latency_batches:
        if b not in lat:
            lat[b] = adaptive_latency(predict, _example(test_x, b), cfg.warmup, cfg.min_repeats, cfg.max_repeats,
                                      cfg.budget_s, cfg.rel_tol)
    for b, st in lat.items():
        out[f"latency_ms_b{b}"] = st["median_ms"]
    out["latency"] = lat
    return out


def measure_variant(folder: str | Path, manifest: Manifest, test_x: torch.Tensor, test_y: torch.Tensor,
                    runtimes: list[str] | None = None, cfg: MeasureConfig | None = None,
                    engines: list[Engine] | None = None, on_result: Callable[[str, dict], None] | None = None) -> dict:
    """Build every applicable predictor of the variant (one per enabled runtime), measure each.

    ``runtimes``: engine names (None: every installed one); ``engines`` overrides it with
    resolved engines (evaluate resolves once).  A runtime that is not installed or cannot run
    this variant is listed in ``skipped`` with the reason; nothing else is lost.  ``on_result``
    is called with (runtime, result) as each one finishes.  Returns::

        {"variant", "runtimes": {name: result}, "skipped": {name: reason}, "fastest": {"b1": name, ...},
         "accuracy_sim": float | None, "graphs": [labels], "build_s": seconds}
    """
    cfg = cfg or MeasureConfig()
    skipped: dict[str, str] = {}
    if engines is None:
        engines, skipped = resolve_runtimes(runtimes)
    t0 = time.perf_counter()
    res: dict = {"variant": manifest.variant, "runtimes": {}, "skipped": dict(skipped), "fastest": {}, "accuracy_sim": None}
    try:
        graphs = build_graphs(folder, manifest)
    except Exception as e:  # an artifact no builder understands: one line, evaluate goes on
        res["skipped"].update({e_.name: f"variant {manifest.variant}: {type(e).__name__}: {e}" for e_ in engines})
        res["graphs"], res["build_s"] = [], time.perf_counter() - t0
        return res
    res["graphs"] = [g.label for g in graphs]
    preds, why = deploy_predictors(folder, manifest, engines, graphs=graphs)
    res["skipped"].update(why)
    res["build_s"] = round(time.perf_counter() - t0, 4)
    for name, p in preds.items():
        g = p.graph
        r = {"description": p.description, "graph": g.label, "precision": g.precision, "notes": list(g.notes)}
        t_rt = time.perf_counter()
        try:
            r.update(measure_predictor(p, test_x, test_y, cfg))
            r["seconds"] = round(time.perf_counter() - t_rt, 4)
        except Exception as e:  # a runtime that compiled but fails to run: skip it with the reason
            res["skipped"][name] = f"{name} failed while running: {type(e).__name__}: {str(e).splitlines()[0][:160]}"
            continue
        if cfg.ops:
            try:
                r["ops"] = p.low_precision_ops()
            except Exception as e:
                r["ops"] = {"error": f"{type(e).__name__}: {e}"}
        res["runtimes"][name] = r
        if on_result is not None:
            on_result(name, r)
    for b in cfg.latency_batches:
        timed = {n: r[f"latency_ms_b{b}"] for n, r in res["runtimes"].items()}
        res["fastest"][f"b{b}"] = min(timed, key=timed.get) if timed else None
    if cfg.sim and manifest.sim is not None:
        t_sim = time.perf_counter()
        res["accuracy_sim"], res["accuracy_sim_source"] = _sim_accuracy(folder, manifest, preds.get("torch-eager"),
                                                                        res["runtimes"].get("torch-eager"), test_x, test_y, cfg)
        res["sim_s"] = round(time.perf_counter() - t_sim, 4)
    res["seconds"] = round(time.perf_counter() - t0, 4)
    return res


def weights_fake_quantized_once(model: torch.nn.Module) -> torch.nn.Module:
    """The same simulation with each layer's weight fake-quantized once instead of at every call
    (round-to-nearest weight quantizers are deterministic functions of the weights, so the logits
    are bit-identical; measured on LeNet-5 at batch 256: ~2x faster).  Stochastic weight rounding
    is left as it is."""
    import copy

    from compress.quant.fakequant import _QuantMixin

    layers = [m for m in model.modules() if isinstance(m, _QuantMixin) and m.wspec is not None]
    if not layers or any(m.wspec.rounding != "nearest" for m in layers):
        return model
    out = copy.deepcopy(model)
    with torch.no_grad():
        for m in out.modules():
            if isinstance(m, _QuantMixin) and m.wspec is not None:
                w = m.weight_fake_quant().detach().clone()
                m.wspec = None
                m.weight = torch.nn.Parameter(w, requires_grad=False)
    return out


def _sim_accuracy(folder, manifest: Manifest, eager: EnginePredictor | None, eager_res: dict | None, test_x, test_y,
                  cfg: MeasureConfig) -> tuple[float, str]:
    """Test accuracy of the simulated form.  When the deployed artifact's eager module computes the
    same logits bit for bit as the simulation (the packed codes ARE the simulated weights: PTQ,
    HAWQ, QAT write them so), its accuracy is reused after checking equality on the first test
    batch; otherwise the simulation runs on the whole test set."""
    from compress.evaluate import accuracy
    from compress.runtimes import load_predictor

    sim = load_predictor(folder, manifest, manifest.sim)
    if hasattr(sim, "module") and isinstance(sim.module, torch.nn.Module):
        sim.module = weights_fake_quantized_once(sim.module)
    if manifest.sim == manifest.deploy and eager_res is not None:
        return eager_res["accuracy"], "deployed eager module (same form)"
    if eager is not None and eager_res is not None and "accuracy" in eager_res:
        xb = test_x[: cfg.batch_size]
        with torch.inference_mode():
            if torch.equal(torch.as_tensor(sim(xb)), torch.as_tensor(eager(xb))):
                return eager_res["accuracy"], "deployed eager module (bit-identical logits on the first test batch)"
    return accuracy(sim, test_x, test_y, cfg.batch_size), "simulated form"


# --------------------------------------------------------------------------- references and speed-ups
def arch_key(spec: dict) -> str:
    """Architecture identity of a model spec: name, kwargs without the init scheme, shapes.
    A BinaryConnect MLP is compared with the fp32 MLP of the same widths (with batch norm)."""
    spec = reference_spec(spec)
    kw = {k: v for k, v in spec.get("kwargs", {}).items() if k != "init"}
    return json.dumps([spec["name"], kw, list(spec["input_shape"]), spec["num_classes"]], sort_keys=True)


def reference_spec(spec: dict) -> dict:
    if spec["name"] == "binaryconnect_mlp":
        return {**spec, "name": "mlp", "kwargs": {"hidden": list(spec["kwargs"].get("hidden", [])), "batchnorm": True}}
    return spec


def is_fp32_reference(manifest: Manifest) -> bool:
    """A dense fp32 model deployed as is: the variant whose runtimes define the fp32 baseline."""
    return (manifest.avg_weight_bits >= 32 and manifest.act_bits is None and manifest.sparsity == 0
            and manifest.deploy.runtime in FP32_FORMS)


def reference_latencies(measured: dict) -> dict:
    """From a :func:`measure_variant` result of an fp32 reference: eager and best fp32 latencies."""
    out = {}
    for key, r in measured["runtimes"].items():
        for k, v in r.items():
            if k.startswith("latency_ms_b"):
                b = k.removeprefix("latency_ms_")
                if key == "torch-eager":
                    out[f"eager_{b}"] = v
                if r.get("precision") == "fp32" and v < out.get(f"best_fp32_{b}", float("inf")):
                    out[f"best_fp32_{b}"], out[f"best_fp32_runtime_{b}"] = v, key
    out["reference"] = measured["variant"]
    return out


class ReferenceClock:
    """The fp32 reference of each architecture, timed NEXT TO each variant compared with it.

    A shared CPU's speed drifts within one evaluate run, in phases of a second or more (measured on a
    2-core cloud VM, the guest 80 % idle, no steal reported: LeNet-5's ORT fp32 graph at batch 256
    alternates between 2.1 and 3.6 ms).  A reference timed once carries its moment into every
    speed-up of its architecture: in one full run the baseline's ORT fp32 took 0.058 ms at batch 1
    while the same dense graph took 0.029 ms in other minutes, and 29 of 76 variants looked faster
    than the best fp32 deployment.  So right after each variant is measured, :meth:`current` times
    the reference on its fastest fp32 engine at each batch size, with the variant's own protocol
    (warm-up, then calls until the median is stable; half the time budget), and the variant's
    speed-ups against the best fp32 deployment use that timing.  Against eager, the reference's own
    eager timing is used: the cheaper choice (an eager re-timing costs ~0.05 s a variant), and most
    eager ratios are 2-7x, where drift rarely turns a verdict.  (Interleaving single calls of the two models was
    measured to be worse: each engine's threads keep spinning after a call and slow the next
    engine's call, eager 2.4x; so was a 3-ms timing, whose first calls still felt the variant's
    engines.)
    The reference: the train stage's baseline, else the first dense fp32 variant of the architecture
    (e.g. monarch-dense-ref, binary-fp32-mlp), else a model built from the spec (seed-0 weights:
    latency does not depend on the values); its fastest fp32 engine per batch size comes from its
    own measurement (every enabled engine, :meth:`record`) or, without one, from timing every fp32
    engine once.  :meth:`summary` gives per architecture the medians of its timings and their range."""

    def __init__(self, found: Sequence[tuple[Path, Manifest]], engines: list[Engine], cfg: MeasureConfig,
                 test_x: torch.Tensor):
        from compress.deploy.engines import get_engine

        self.engines = engines + [get_engine("torch-eager")] * all(e.name != "torch-eager" for e in engines)
        self.cfg, self.test_x = cfg, test_x
        self.chosen: dict[str, tuple[Path, Manifest]] = {}
        for folder, man in sorted(found, key=lambda fm: fm[1].stage != "train"):  # the trained baseline first
            if arch_key(man.model) not in self.chosen and is_fp32_reference(man):
                self.chosen[arch_key(man.model)] = (folder, man)
        self.first: dict[str, dict] = {}  # arch -> its reference's own timing (picks the fastest fp32 engines)
        self.own: dict[str, dict] = {}  # arch -> the latest full timing of its reference (eager included)
        self.times: dict[str, dict[str, list[float]]] = {}  # arch -> {"eager_b1": [...], "best_fp32_b1": [...]}
        self._preds: dict[str, tuple[str, dict[str, EnginePredictor]]] = {}

    def is_reference(self, man: Manifest) -> bool:
        ref = self.chosen.get(arch_key(man.model))
        return ref is not None and ref[1].variant == man.variant

    def record(self, man: Manifest, res: dict) -> dict | None:
        """The reference variant's own measurement (every engine) as a timing of its architecture; its
        speed-ups are its own latencies' ratios (best fp32 = 1 by definition)."""
        if not (self.is_reference(man) and res.get("runtimes")):
            return None
        k = arch_key(man.model)
        lat = reference_latencies(res)
        if "eager_b1" not in lat:  # eager not enabled: still time the reference in eager (latency only)
            eager = self._time_all(k, man, only_eager=True)
            for b in self.cfg.latency_batches:
                if f"eager_b{b}" in eager:
                    lat[f"eager_b{b}"] = eager[f"eager_b{b}"]
                    if eager[f"eager_b{b}"] < lat.get(f"best_fp32_b{b}", float("inf")):
                        lat[f"best_fp32_b{b}"], lat[f"best_fp32_runtime_b{b}"] = eager[f"eager_b{b}"], "torch-eager"
        self.first.setdefault(k, lat)
        self.own[k] = lat
        self._keep(k, lat)
        return lat

    def current(self, man: Manifest) -> dict:
        """The reference of ``man``'s architecture timed now: {"reference", "eager_b<B>", "best_fp32_b<B>",
        "best_fp32_runtime_b<B>"}."""
        k = arch_key(man.model)
        name, rpreds = self._predictors(k, man)
        if k not in self.first:
            self.first[k] = self.own[k] = self._time_all(k, man)
            self._keep(k, self.first[k])
            return self.first[k]
        out: dict = {"reference": name}
        for b in self.cfg.latency_batches:
            x = _example(self.test_x, b)
            best = self.first[k].get(f"best_fp32_runtime_b{b}")
            if f"eager_b{b}" in self.own[k]:  # eager: the reference's latest full timing
                out[f"eager_b{b}"] = self.own[k][f"eager_b{b}"]
            if best in rpreds:
                out[f"best_fp32_b{b}"], out[f"best_fp32_runtime_b{b}"] = self._time(rpreds[best], x), best
        self._keep(k, {key: v for key, v in out.items() if key.startswith("best_fp32_b")})  # eager was copied, not timed
        return out

    def _time(self, p: EnginePredictor, x: torch.Tensor) -> float:
        """The variant's own protocol (warm-up, calls until the median is stable), half its time budget."""
        c = self.cfg
        return adaptive_latency(p, x, c.warmup, c.min_repeats, c.max_repeats, c.budget_s / 2, c.rel_tol)["median_ms"]

    def summary(self) -> dict[str, dict]:
        """{arch_key: {"reference", "timings", "eager_b<B>", "best_fp32_b<B>" (medians over the timings),
        "best_fp32_runtime_b<B>", "best_fp32_range_b<B>": [min, max], "best_fp32_spread_b<B>": p90 / p10 - 1
        of the timings (5 or more), the run's own measure of its timing noise}}."""
        out = {}
        for k, first in self.first.items():
            row = {"reference": first["reference"], "timings": max((len(v) for v in self.times.get(k, {}).values()), default=0)}
            for b in self.cfg.latency_batches:
                for key in (f"eager_b{b}", f"best_fp32_b{b}"):
                    vals = self.times.get(k, {}).get(key, [])
                    if vals:
                        row[key] = statistics.median(vals)
                        if key.startswith("best"):
                            row[f"best_fp32_range_b{b}"] = [min(vals), max(vals)]
                            if len(vals) >= 5:  # the CPU's drift over the run: p90 / p10 - 1 of the same model's timings
                                q = statistics.quantiles(vals, n=10)
                                row[f"best_fp32_spread_b{b}"] = q[-1] / q[0] - 1
                if f"best_fp32_runtime_b{b}" in first:
                    row[f"best_fp32_runtime_b{b}"] = first[f"best_fp32_runtime_b{b}"]
            out[k] = row
        return out

    def _keep(self, k: str, lat: dict) -> None:
        for key, v in lat.items():
            if key.startswith(("eager_b", "best_fp32_b")):
                self.times.setdefault(k, {}).setdefault(key, []).append(v)

    def _predictors(self, k: str, man: Manifest) -> tuple[str, dict[str, EnginePredictor]]:
        if k not in self._preds:
            preds, name = {}, None
            if k in self.chosen:
                folder, ref = self.chosen[k]
                try:
                    preds, _ = deploy_predictors(folder, ref, self.engines)
                    name = ref.variant
                except Exception:  # noqa: BLE001  a broken reference artifact: its row says why; time a spec-built model
                    preds = {}
            if not preds:
                from compress.deploy.graphs import fp32_graphs
                from compress.runtimes import model_from_spec

                spec = reference_spec(man.model)
                torch.manual_seed(0)
                model = model_from_spec(spec).eval()
                label = f"{spec['name']}{json.dumps(spec.get('kwargs') or {}, sort_keys=True) if spec.get('kwargs') else ''}"
                ref = Manifest(variant=f"{spec['name']}-fp32-reference", stage="evaluate", method="reference", model=spec,
                               dataset="", seed=0, avg_weight_bits=32.0, act_bits=None, sparsity=0.0, params=0,
                               deploy=Form("torch-eager", []))
                preds, _ = deploy_predictors(Path("."), ref, self.engines, graphs=fp32_graphs(model, ref, "fp32 reference"))
                name = f"{label} fp32, built from its spec (no fp32 variant of this architecture)"
            self._preds[k] = (name, {n: p for n, p in preds.items() if p.graph.precision == "fp32"})
        return self._preds[k]

    def _time_all(self, k: str, man: Manifest, only_eager: bool = False) -> dict:
        """Every fp32 engine of the reference (or only eager), adaptive latency at each batch size."""
        name, preds = self._predictors(k, man)
        out: dict = {"reference": name}
        for b in self.cfg.latency_batches:
            timed = {n: adaptive_latency(p, _example(self.test_x, b), self.cfg.warmup, self.cfg.min_repeats, self.cfg.max_repeats,
                                         self.cfg.budget_s, self.cfg.rel_tol)["median_ms"]
                     for n, p in preds.items() if not only_eager or n == "torch-eager"}
            if "torch-eager" in timed:
                out[f"eager_b{b}"] = timed["torch-eager"]
            if timed and not only_eager:
                best = min(timed, key=timed.get)
                out[f"best_fp32_b{b}"], out[f"best_fp32_runtime_b{b}"] = timed[best], best
        return out


def speedups(result: dict, ref: dict) -> dict:
    """``speedup_vs_eager_b<B>`` (reference eager / variant fastest) and ``speedup_vs_best_fp32_b<B>``
    (reference fastest fp32 runtime / variant fastest), per latency batch size (``ref``: the reference
    as timed next to the variant, :meth:`ReferenceClock.current`)."""
    out = {}
    for b, name in result.get("fastest", {}).items():
        if name is None:
            continue
        ms = result["runtimes"][name][f"latency_ms_{b}"]
        for tag, k in (("eager", f"eager_{b}"), ("best_fp32", f"best_fp32_{b}")):
            out[f"speedup_vs_{tag}_{b}"] = ref[k] / ms if k in ref and ms > 0 else None
    return out


def variant_rows(manifest: Manifest, result: dict, ref: dict | None = None) -> tuple[dict, dict]:
    """(deterministic row, latency row) for the evaluate stage's outputs.

    Deterministic: per-runtime accuracies (``accuracy.<runtime>``), ``accuracy`` = the first
    runtime in the enabled order that ran the variant, ``accuracy_sim``, the spread across runtimes,
    and the runtimes that could not run it with the reason ("n/a" engines left out).
    Latency: per-runtime latencies, the fastest runtime per batch size with its description and
    low-precision ops, and the speed-ups against the fp32 reference."""
    rts = result["runtimes"]
    accs = {n: r["accuracy"] for n, r in rts.items() if "accuracy" in r}
    first = next(iter(accs), None)
    det = {"variant": manifest.variant, "accuracy": accs.get(first), "accuracy_runtime": first,
           "accuracy_sim": result.get("accuracy_sim"),
           "accuracy_spread_pp": (100 * (max(accs.values()) - min(accs.values()))) if accs else None,
           **{f"accuracy.{n}": a for n, a in accs.items()},
           "skipped": {n: why for n, why in result.get("skipped", {}).items() if not why.startswith("n/a:")}}
    lat = {"variant": manifest.variant}
    for n, r in rts.items():
        for k, v in r.items():
            if k.startswith("latency_ms_b"):
                lat[f"{k}.{n}"] = v
    for b, name in result.get("fastest", {}).items():
        if name is None:
            continue
        r = rts[name]
        lat[f"latency_ms_{b}"] = r[f"latency_ms_{b}"]
        lat[f"runtime_{b}"] = r["description"]
        lat[f"fastest_{b}"] = name
        lat[f"accuracy_fastest_{b}"] = r.get("accuracy")
        lat[f"lowp_ops_{b}"] = _ops_text(r.get("ops", {}))
    if ref is not None:
        lat.update(speedups(result, ref))
        lat["reference"] = ref.get("reference")
    return det, lat


def evaluate_deployed(found: list[tuple[Path, Manifest]], test_x: torch.Tensor, test_y: torch.Tensor,
                      runtimes: list[str] | None = None, cfg: MeasureConfig | None = None,
                      on_variant: Callable[[Manifest, dict], None] | None = None,
                      key: str = "evaluate.runtimes") -> dict:
    """The evaluate stage's measurement: every variant on every enabled runtime, fp32 references,
    speed-ups.  ``found`` = compress.variants.discover(root).  An unknown runtime name is a
    one-line ValueError naming ``key`` (raised before any work); a runtime that is not installed,
    or cannot run a variant, is skipped with the reason and evaluate goes on.  ``on_variant`` is
    called with (manifest, result) after each variant (progress, MLflow).  Returns::

        {"engines": [names], "skipped_runtimes": {name: reason}, "threads": n,
         "results": {variant: measure_variant result}, "references": {arch: latencies},
         "deterministic": [row per variant], "latency": [row per variant], "seconds": s}
    """
    cfg = cfg or MeasureConfig()
    engines, skipped = resolve_runtimes(runtimes, key)
    t0 = time.perf_counter()
    results, items = {}, []
    clock = ReferenceClock(found, engines, cfg, test_x)
    for folder, man in found:
        res = measure_variant(folder, man, test_x, test_y, cfg=cfg, engines=engines)
        ref = clock.record(man, res) or (clock.current(man) if res["runtimes"] else None)  # timed right after it
        results[man.variant] = res
        items.append((man, res, ref))
        if on_variant is not None:
            on_variant(man, res)
    refs = clock.summary()
    det, lat = [], []
    for man, res, ref in items:
        d, l_ = variant_rows(man, res, ref)
        det.append(d)
        lat.append(l_)
    return {"engines": [e.name for e in engines], "skipped_runtimes": skipped, "threads": torch.get_num_threads(),
            "results": results, "references": refs, "deterministic": det, "latency": lat,
            "seconds": round(time.perf_counter() - t0, 2)}


def _ops_text(ops: dict) -> str:
    if not ops or "error" in ops:
        return ""
    i8 = sum(ops.get("int8", {}).values())
    f32 = sum(ops.get("fp32", {}).values())
    detail = ", ".join(f"{k} x{v}" for k, v in {**ops.get("int8", {}), **ops.get("fp32", {})}.items())
    return f"int8 {i8}/{i8 + f32} compute ops ({detail})"


__all__ = [
    "MeasureConfig",
    "accuracy_timed",
    "adaptive_latency",
    "arch_key",
    "evaluate_deployed",
    "ReferenceClock",
    "is_fp32_reference",
    "measure_predictor",
    "measure_variant",
    "reference_latencies",
    "reference_spec",
    "speedups",
    "kernel_profiles",
    "variant_rows",
    "weights_fake_quantized_once",
]


def kernel_profiles(items: list[tuple[Path, Manifest, dict]], refs: dict[str, dict], engines: list[Engine],
                    test_x: torch.Tensor, batches: Sequence[int] = (1, 256), top: int = 6) -> list[dict]:
    """Where the time goes, from each engine's own profiler (ONNX Runtime's per-kernel times,
    OpenVINO's performance counters): for the architecture with the most integer-grid variants, its
    fp32 reference on its fastest fp32 engine and its fastest integer-grid variant (W <= 8 bits,
    8-bit activations) on that variant's fastest engine, at each batch size.  A compressed model
    that is not faster than the best fp32 deployment is explained by these rows (which kernels, how
    long, in which precision).  Each entry: {"role", "variant", "engine", "batch", "ms_measured",
    "ops": [{"op", "kernel", "ms_per_call", "share"}]}; an engine without a profiler gives no entry."""
    ints = [(f, m, r) for f, m, r in items
            if m.act_bits is not None and m.act_bits <= 8 and m.avg_weight_bits <= 8 and r.get("runtimes")]
    if not ints:
        return []
    counts: dict[str, int] = {}
    for _, m, _ in ints:
        counts[arch_key(m.model)] = counts.get(arch_key(m.model), 0) + 1
    arch = max(counts, key=counts.get)
    ref = refs.get(arch) or {}
    by_name = {m.variant: (f, m, r) for f, m, r in items}
    out: list[dict] = []
    for b in batches:
        picks = []
        if ref.get("reference") in by_name and ref.get(f"best_fp32_runtime_b{b}"):
            picks.append(("best fp32", by_name[ref["reference"]], ref[f"best_fp32_runtime_b{b}"]))
        cand = [(r["runtimes"][r["fastest"][f"b{b}"]][f"latency_ms_b{b}"], (f, m, r)) for f, m, r in ints
                if arch_key(m.model) == arch and r["fastest"].get(f"b{b}")]
        if cand:
            best = min(cand, key=lambda c: c[0])[1]
            picks.append(("fastest integer-grid", best, best[2]["fastest"][f"b{b}"]))
        for role, (folder, man, res), eng_name in picks:
            eng = next((e for e in engines if e.name == eng_name), None)
            if eng is None:
                continue
            preds, _ = deploy_predictors(folder, man, [eng])
            p = preds.get(eng_name)
            ops = p.profile(_example(test_x, b), 20 if b == 1 else 5)[:top] if p is not None else []
            if ops:
                out.append({"role": role, "variant": man.variant, "engine": eng_name, "batch": b,
                            "ms_measured": res["runtimes"][eng_name][f"latency_ms_b{b}"],
                            "ops": [{k: o[k] for k in ("op", "kernel", "ms_per_call", "share")} for o in ops]})
    return out
