"""params.yaml sections of the Hessian family: ``hawq`` (mixed precision) and ``obd`` (pruning).

Everything that can be checked without the model is checked here; the block names are checked
against the model by :func:`compress.hessian.hawq.resolve_blocks` before any Hessian work.
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field, ValidationInfo, field_validator

from compress.config import FitConfig, Section, check_known


class ProbeConfig(Section):
    """Which calibration batches (never test) define the loss, and how many random probes."""

    batch_size: int = Field(256, ge=1, description="calibration images per HVP batch")
    batches: int = Field(2, ge=1, description="HVP batches (the loss is their mean)")
    samples: int = Field(16, ge=1, description="Rademacher probes (trace / diagonal)")


class HessianConfig(ProbeConfig):
    """ProbeConfig + the power iteration's stopping rule (HAWQ)."""

    tol: float = Field(1e-3, description="power iteration: relative change of the Rayleigh quotient to stop")
    max_iters: int = Field(100, ge=1, description="power iteration: maximum HVPs per block")

    @field_validator("tol")
    @classmethod
    def _tol(cls, v: float) -> float:
        if not v > 0:
            raise ValueError("must be > 0 (a relative tolerance such as 1e-3)")
        return v


class HawqConfig(Section):
    blocks: Literal["layer", "residual"] | dict[str, list[str]] = Field(
        "layer", description="'layer': each conv/linear; 'residual': residual blocks; or {name: [layer-name globs]}")
    hessian: HessianConfig = Field(default_factory=HessianConfig, description="the loss (calibration batches) and probes")
    bit_candidates: list[int] = Field(default_factory=lambda: [2, 3, 4, 6, 8], description="weight widths a block may get")
    budgets_avg_bits: list[float] = Field(default_factory=lambda: [2.5, 3.5],
                                          description="model-size budgets: average weight bits over all blocks (at an integer "
                                                      "budget the allocation is usually uniform: the comparison says 'trivial')")
    uniform_bits: list[int] = Field(default_factory=lambda: [2, 3], description="uniform-precision baselines; each mixed "
                                    "allocation is compared with every one of the same or smaller size")
    allocator: str = Field("sensitivity", description="sensitivity: the lecture's Algorithm 2 (more bits to blocks with larger "
                           "S_i = lambda_i/n_i, under the size budget) | ilp: exact min sum w_i ||Q(W_i) - W_i||^2 (HAWQ-V3 style)")
    compare_allocators: list[str] = Field(default_factory=lambda: ["ilp"], description="other allocators fine-tuned and "
                                          "compared with uniform the same way ([] = none)")
    objective: Literal["eigenvalue", "trace"] = Field(
        "eigenvalue", description="ILP weight per block: lambda_i (HAWQ) or Tr(H_i)/n_i (HAWQ-v2)")
    act_bits: int | None = Field(8, ge=2, le=16, description="activation bits (null: float activations)")
    observer: str = Field("minmax", description="activation-range observer (calibration split)")
    seeds: list[int] = Field(default_factory=lambda: [0, 1], description="fine-tune seeds of the HAWQ-vs-uniform claim "
                             "(the paper preset: 3)")
    finetune: FitConfig = Field(default_factory=FitConfig, description="block-wise QAT in Omega order: this FitConfig "
                                                                        "block per block (max_iterations: steps per block)")
    joint: FitConfig | None = Field(None, description="then joint QAT of every parameter (a FitConfig block; null: none)")
    workers: int = Field(2, ge=1, description="fine-tune jobs run in this many processes (1 torch thread each)")
    landscape_points: int = Field(11, ge=3, description="points of each 1-D loss landscape (HAWQ Fig. 2)")
    landscape_radius: float = Field(0.5, gt=0, description="max |eps| of W + eps*v along the unit top eigenvector")

    @field_validator("blocks")
    @classmethod
    def _blocks(cls, v):
        if isinstance(v, dict):
            if not v:
                raise ValueError("must name at least one block, or be 'layer' / 'residual'")
            for name, pats in v.items():
                if not pats or any(not isinstance(p, str) or not p for p in pats):
                    raise ValueError(f"block {name!r} needs a non-empty list of layer-name patterns")
        return v

    @field_validator("bit_candidates")
    @classmethod
    def _cands(cls, v: list[int]) -> list[int]:
        if not v or any(b < 1 or b > 8 for b in v) or len(set(v)) != len(v):
            raise ValueError("must be a non-empty list of distinct integer bit widths in 1..8")
        return sorted(v)

    @field_validator("budgets_avg_bits")
    @classmethod
    def _budgets(cls, v: list[float], info: ValidationInfo) -> list[float]:
        cands = info.data.get("bit_candidates")
        if not v:
            raise ValueError("must list at least one average-bit budget")
        if cands:
            low = [b for b in v if b < min(cands)]
            if low:
                raise ValueError(f"budget(s) {low} below {min(cands)} bits, the smallest of hawq.bit_candidates: "
                                 "no allocation fits; raise the budget or add a smaller candidate")
        return v

    @field_validator("allocator")
    @classmethod
    def _allocator(cls, v: str) -> str:
        from compress.hessian.hawq import (
            ALLOCATORS,  # the registry is the only source of names
        )

        return check_known("allocator", v, ALLOCATORS)

    @field_validator("compare_allocators")
    @classmethod
    def _compare(cls, v: list[str]) -> list[str]:
        from compress.hessian.hawq import ALLOCATORS

        return check_known("allocator", v, ALLOCATORS)

    @field_validator("uniform_bits")
    @classmethod
    def _uniform(cls, v: list[int]) -> list[int]:
        if any(b < 1 or b > 8 for b in v):
            raise ValueError("bit widths must be in 1..8")
        return v

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, v: list[int]) -> list[int]:
        if not v or any(s < 0 for s in v) or len(set(v)) != len(v):
            raise ValueError("must be a non-empty list of distinct non-negative seeds")
        return v


class ObdConfig(Section):
    """Optimal Brain Damage (LeCun et al. 1990): saliency s_i = H_ii w_i^2 / 2 from a Hessian-diagonal estimate."""

    hessian: ProbeConfig = Field(default_factory=lambda: ProbeConfig(samples=32), description="the loss (calibration batches) and probes")
    diag: Literal["ggn", "hutchinson", "exact"] = Field(
        "ggn", description="H_ii estimator: 'ggn' (Rademacher Gauss-Newton, never negative), 'hutchinson' "
                           "(z*Hz HVP probes), 'exact' (one HVP per weight: small models only)")
    compare_hutchinson: bool = Field(True, description="also draw the one-shot curve with the plain Hutchinson diagonal")
    rounds: int = Field(4, ge=1, description="prune -> retrain rounds (LeCun et al.'s OBD procedure)")
    prune_fraction: float = Field(0.5, gt=0, lt=1, description="fraction of the remaining weights deleted per round")
    negative: str = Field("posterior", description="negative Hutchinson estimates of H_ii (noise: H_ii >= 0 for this net): "
                          "posterior (posterior mean of H_ii >= 0) | clamp | abs | keep")
    retrain: FitConfig = Field(default_factory=FitConfig, description="retraining after each deletion round (a FitConfig block)")
    workers: int = Field(2, ge=1, description="the OBD and magnitude loops run in this many processes (1 torch thread each)")
    curve_points: int = Field(12, ge=2, description="points of the one-shot OBD-vs-magnitude curve")
    curve_max_fraction: float = Field(0.9, gt=0, lt=1, description="largest deleted fraction on that curve")
    loss_samples: int = Field(2000, ge=1, description="training images used to measure the training loss")


    @field_validator("negative")
    @classmethod
    def _negative(cls, v: str) -> str:
        from compress.prune.obd import NEGATIVE

        return check_known("rule", v, NEGATIVE)


SECTIONS = {"hawq": HawqConfig, "obd": ObdConfig}
