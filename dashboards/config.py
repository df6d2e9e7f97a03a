"""params.yaml section ``report``: the Pareto table, the figures and the exercise report."""
from __future__ import annotations

from pydantic import Field, field_validator

from compress.config import Section


class ReportConfig(Section):
    plot_globs: list[str] = Field(default_factory=lambda: ["plots/**/*.png", "reports/**/*.png", "search/figures/*.png"],
                                  description="other stages' figures embedded in the report")
    confidence: float = Field(0.95, gt=0, lt=1, description="confidence level of the replicate intervals")
    heatmap_top: int = Field(10, ge=1, description="bit-allocation trials shown in the heat-map")

    @field_validator("plot_globs")
    @classmethod
    def _globs(cls, v: list[str]) -> list[str]:
        bad = [g for g in v if g.startswith("/") or ".." in g.split("/")]
        if bad:
            raise ValueError(f"glob {bad[0]!r} must be relative to the project and stay inside it")
        return v


SECTIONS = {"report": ReportConfig}
