"""State-dict checkpoints (safetensors) with errors a user can act on."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used.  ``path`` (the file) and ``problem`` (what is wrong, e.g.
    ``is corrupt (...)``) let :func:`compress.runtimes.load_predictor` name the variant too."""

    def __init__(self, message: str, path: str | Path | None = None, problem: str | None = None):
        super().__init__(message)
        self.path = Path(path) if path is not None else None
        self.problem = problem


def save_state_dict(state: dict[str, torch.Tensor] | nn.Module, path: str | Path, metadata: dict[str, str] | None = None) -> Path:
    from safetensors.torch import save_file

    if isinstance(state, nn.Module):
        state = state.state_dict()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # clone: safetensors refuses shared / non-contiguous storage
    save_file({k: v.detach().cpu().contiguous().clone() for k, v in state.items()}, str(path), metadata=metadata)
    return path


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} not found: run the stage that produces it (dvc repro)", path, "is missing")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:120]
        raise CheckpointError(f"checkpoint {path} is corrupt or not a safetensors file ({reason}); delete it and rerun its stage",
                              path, f"is corrupt (safetensors: {reason})") from None


def load_into(model: nn.Module, path: str | Path, strict: bool = True) -> nn.Module:
    """Load a safetensors state dict into ``model``; mismatches become one clear line."""
    state = read_state_dict(path)
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}" for k in own if k in state and state[k].shape != own[k].shape]
    if strict and (missing or unexpected or shapes):
        parts = []
        if missing:
            parts.append(f"missing {missing[:3]}{'...' if len(missing) > 3 else ''}")
        if unexpected:
            parts.append(f"unexpected {unexpected[:3]}{'...' if len(unexpected) > 3 else ''}")
        if shapes:
            parts.append(f"shape mismatch {shapes[:2]}")
        raise CheckpointError(f"checkpoint {path} does not match model {type(model).__name__}: {'; '.join(parts)}. "
                              "Was it trained with other model params? Rerun its stage (dvc repro)",
                              path, f"does not match the model {type(model).__name__} ({'; '.join(parts)})")
    model.load_state_dict(state, strict=strict)
    return model


def load_baseline(folder: str | Path) -> tuple[nn.Module, dict]:
    """The trained baseline written by the train stage: (model in eval mode, its spec).

    A missing or mismatched folder is a CheckpointError that says which stage to run.
    """
    import json

    from compress.models import model_from_spec

    folder = Path(folder)
    spec_path = folder / "spec.json"
    if not spec_path.exists():
        raise CheckpointError(f"{spec_path} is missing: run the train stage first (dvc repro train)")
    try:
        spec = json.loads(spec_path.read_text())
        model = model_from_spec(spec)
    except (json.JSONDecodeError, KeyError, ValueError) as e:
        raise CheckpointError(f"{spec_path} is not a valid model spec ({e}); rerun the train stage") from None
    load_into(model, folder / "model.safetensors")
    return model.eval(), spec
