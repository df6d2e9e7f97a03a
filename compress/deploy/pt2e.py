"""A PT2E int8 program (``torch.export`` file) compiled by ``torch.compile`` (inductor freezing):
the ``pt2e-inductor-int8`` runtime's loader and the ``pt2e`` deploy engine's.  Imports only torch,
torchao and :mod:`compress.variants`."""
from __future__ import annotations

from pathlib import Path

import torch

from compress.variants import corrupt, missing


def first_line(e: Exception) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return lines[0] if lines else type(e).__name__


class Pt2eInductorPredictor:
    """The saved int8 program, compiled by inductor with freezing (needed for the int8
    oneDNN kernels: without it there is no speed-up).  One static-shape graph per batch size."""

    def __init__(self, path: Path):
        import logging
        import zipfile

        # 1. the file: a .pt2 program is a zip archive (checked before the heavy imports below)
        if not Path(path).is_file():
            raise missing(path)
        if not zipfile.is_zipfile(path):
            raise corrupt(path, f"not a zip archive (a torch.export program); {Path(path).stat().st_size} bytes on disk")
        # 2. quantize_pt2e registers the quantized_decomposed ops the saved program calls (without
        #    it torch.export.load cannot deserialize the program);
        #    x86_inductor_quantizer registers, on import, inductor's int8 passes (quant lift-up,
        #    qconv/qlinear weight prepack -> oneDNN int8 kernels).  Without them inductor compiles
        #    the reference graph (dequantize -> fp32 conv/linear -> quantize): same numbers as the
        #    uncompiled program, no int8 kernel, no speed-up.  The exporting process had it
        #    imported already, so only a fresh process (the evaluate stage) missed it.
        import torchao.quantization.pt2e.quantize_pt2e
        import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer  # noqa: F401

        # 3. the program (torch.export logs a traceback before it raises: the error below says it in one line)
        log = logging.getLogger("torch.export")
        level = log.level
        log.setLevel(logging.CRITICAL)
        try:
            self.module = torch.export.load(str(path)).module()
        except Exception as e:  # noqa: BLE001  zip reader / unpickling / schema errors of a damaged program
            raise corrupt(path, f"torch.export.load: {type(e).__name__}: {first_line(e)}") from None
        finally:
            log.setLevel(level)
        self.compiled = torch.compile(self.module, dynamic=False)
        self.description = f"PT2E X86InductorQuantizer int8 + torch.compile (inductor, freezing), torch {torch.__version__}"

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        import torch._inductor.config as inductor_config

        with inductor_config.patch(freezing=True):
            return self.compiled(x)


__all__ = ["Pt2eInductorPredictor", "first_line"]
