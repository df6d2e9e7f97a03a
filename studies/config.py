"""params.yaml section ``search``: the Optuna searches run by the ``search`` stage and the CLI.

Every bad value is one line naming the key (``params.yaml: search.sampler = 'cmaes' is not
allowed; ...``) raised by :func:`compress.config.load_params` before any trial runs.  The
storage URL is only checked syntactically here; :func:`studies.storage.open_storage` connects
to it (also before any trial runs) and names the key when it cannot be reached.
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from compress.config import Section, check_known

SAMPLERS = ("nsga2", "tpe", "random")
STUDY_MODULES = {"bits": "studies.bits", "sparsity": "studies.sparsity", "joint": "studies.joint"}  # kind -> build_spec
MAX_BITS = 8  # the packed integer formats of compress.quant.packing hold 1..8 bits


def check_bits(values: list, key: str, allow_float: bool) -> list:
    """Candidate bit widths: integers in 1..8 (``None`` = float activations where allowed)."""
    if not values:
        raise ValueError(f"{key} must list at least one bit width")
    for b in values:
        if b is None and allow_float:
            continue
        if isinstance(b, bool) or not isinstance(b, int) or not 1 <= b <= MAX_BITS:
            allowed = f"integers 1..{MAX_BITS}" + (" or null (float activations)" if allow_float else "")
            raise ValueError(f"bit width {b!r} is invalid; allowed: {allowed}")
    if len(set(values)) != len(values):
        raise ValueError(f"{values!r} lists a bit width twice")
    return list(values)


class SearchConfig(Section):
    """Multi-objective searches: accuracy (max, validation split) x artifact bytes (min)."""

    studies: list[str] = Field(default_factory=lambda: ["bits", "sparsity"],
                               description="bits (per-layer W/A bits, PTQ) | sparsity (per-layer magnitude levels) | joint")
    n_trials: int = Field(12, description="finished trials each study must hold (resumes: only the missing ones run)")
    sampler: str = Field("nsga2", description="nsga2 | tpe (multi-objective TPE) | random")
    population_size: int = Field(6, ge=2, description="NSGA-II population (generation size)")
    storage: str = Field("journal:search/optuna.journal",
                         description="journal:PATH (default, multi-process safe file), sqlite:///PATH or postgresql://...")
    study_prefix: str = Field("compress", min_length=1, description="study name: <prefix>-<kind>-<hash of baseline, ranges, candidates>")
    weight_bits: list[int] = Field(default_factory=lambda: [2, 3, 4, 6, 8], description="per-layer weight-bit candidates")
    act_bits: list[int | None] = Field(default_factory=lambda: [4, 6, 8], description="per-layer activation-bit candidates (null: float)")
    sparsity_levels: list[float] = Field(default_factory=lambda: [0.0, 0.5, 0.7, 0.8, 0.9, 0.95], description="per-layer sparsity candidates")
    joint_weight_bits: list[int] = Field(default_factory=lambda: [4, 8], description="bit candidates of the joint search")
    trial_mode: Literal["ptq", "qat"] = Field("ptq", description="bits trials: PTQ only, or a short QAT fine-tune")
    qat_steps: int = Field(60, ge=1, description="QAT optimizer steps per trial (trial_mode: qat)")
    qat_report_every: int = Field(20, ge=1, description="validate (and maybe stop) every N QAT steps")
    qat_lr: float = Field(1e-4, gt=0, description="learning rate of the QAT trials")
    pruner: Literal["median", "none"] = Field("median", description="QAT trials: median stopping rule or none")
    pruner_warmup_trials: int = Field(4, ge=1, description="complete trials needed before the pruner acts")
    calibration: str = Field("minmax", description="observer in calibration/ranges.json whose activation ranges the PTQ trials use")
    eval_size: int | None = Field(2000, ge=1, description="validation images per trial (null: the whole split)")
    latency: bool = Field(True, description="measure each trial's deployed-form latency (batch 1 and 256)")
    latency_repeats: int = Field(5, ge=1, description="timed calls per trial latency")
    latency_threads: int | None = Field(1, ge=1, description="torch threads while timing trials (null: all cores)")
    enqueue_uniform: bool = Field(True, description="enqueue uniform allocations as the first trials")
    use_hawq: bool = Field(True, description="enqueue the hawq stage's allocations (hawq/allocation.json) when that file exists")
    export_front: int = Field(3, ge=0, description="export this many Pareto-optimal trials per study as variants")
    heartbeat_s: int = Field(10, ge=1, description="RDB storages: a trial without heartbeat for 3x this is failed and retried")

    @field_validator("studies")
    @classmethod
    def _kinds(cls, v: list[str]) -> list[str]:
        return check_known("study", v, STUDY_MODULES)

    @field_validator("n_trials")
    @classmethod
    def _positive(cls, v: int) -> int:
        if v < 1:
            raise ValueError("the trial count must be a positive integer (>= 1)")
        return v

    @field_validator("sampler")
    @classmethod
    def _sampler(cls, v: str) -> str:
        return check_known("sampler", v, SAMPLERS)

    @field_validator("weight_bits", "joint_weight_bits")
    @classmethod
    def _wbits(cls, v: list) -> list:
        return check_bits(v, "weight bit candidates", allow_float=False)

    @field_validator("act_bits")
    @classmethod
    def _abits(cls, v: list) -> list:
        return check_bits(v, "activation bit candidates", allow_float=True)

    @field_validator("sparsity_levels")
    @classmethod
    def _levels(cls, v: list[float]) -> list[float]:
        if not v:
            raise ValueError("list at least one sparsity level")
        bad = [s for s in v if not 0.0 <= s < 1.0]
        if bad:
            raise ValueError(f"sparsity level {bad[0]!r} is outside [0, 1)")
        return v

    @field_validator("storage")
    @classmethod
    def _storage(cls, v: str) -> str:
        from studies.storage import check_url

        check_url(v)
        return v

    @model_validator(mode="after")
    def _unique(self) -> "SearchConfig":
        if len(set(self.studies)) != len(self.studies):
            raise ValueError(f"studies {self.studies!r} lists a study twice")
        return self


SECTIONS = {"search": SearchConfig}
