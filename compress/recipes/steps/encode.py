"""``encode``: write the artifact with an entropy coder from a maintained library and reload it.

Relative indices + codes + codebooks + float tensors (compress.recipes.artifact) go through
``coder``: ``lzma`` (stdlib, LZMA2 raw stream: range coding with context modelling after LZ77),
``zstd`` (zstandard: FSE/tANS + Huffman after LZ77) or ``none``.  ``floats`` stores biases and
the other float tensors as float16 or float32.  The model is replaced by the decoded artifact,
so the trail's accuracy after this step is the accuracy of the file as written.
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from compress.recipes.base import RecipeContext, Step, StepSettings, fail


class EncodeSettings(StepSettings):
    coder: Literal["lzma", "zstd", "none"] = "lzma"
    level: int | None = Field(None, description="lzma preset 0..9 (default 9) or zstd level 1..22 (default 22)")
    floats: Literal["float32", "float16"] = "float16"

    @model_validator(mode="after")
    def _level(self) -> EncodeSettings:
        lo, hi = {"lzma": (0, 9), "zstd": (1, 22), "none": (0, 0)}[self.coder]
        if self.level is not None and not lo <= self.level <= hi:
            fail("level", f"{self.level} is out of range for {self.coder}; allowed: {lo} to {hi}")
        return self

    def resolved_level(self) -> int:
        return self.level if self.level is not None else {"lzma": 9, "zstd": 22, "none": 0}[self.coder]


class EncodeStep(Step):
    name = "encode"
    Settings = EncodeSettings
    phase = 3
    requires = ("quantize",)
    once = True
    last = True

    def run(self, ctx: RecipeContext, s: EncodeSettings, index: int) -> dict:
        from compress.recipes.artifact import serialize
        from compress.recipes.tensors import model_from_bytes, to_artifact

        ctx.encoding = {"coder": s.coder, "level": s.resolved_level(), "floats": s.floats}
        raw = serialize(to_artifact(ctx.model, ctx.spec, ctx.monarch), **ctx.encoding)
        ctx.final_bytes = raw
        ctx.model = model_from_bytes(raw, f"recipe {ctx.name}")
        return {"coder": s.coder, "floats": s.floats}
