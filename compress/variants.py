"""The variants table's contract: every stage that produces a model writes a variant folder.

    variants/<stage>/<variant>/manifest.json   what it is (method, bits, sparsity, runtime)
    variants/<stage>/<variant>/<files>         the artifact(s) the runtime deploys

``deploy`` names the runtime that runs the artifact as deployed (its files are what
``size_bytes`` counts); the optional ``sim`` form is the simulated (fake-quant) version whose
test accuracy is reported as ``accuracy_sim``.  ``evaluate`` discovers every manifest and
measures every variant the same way (see compress/evaluate.py).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"


@dataclass
class Form:
    runtime: str  # key of compress.runtimes.RUNTIMES
    files: list[str]  # relative to the variant folder
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class Manifest:
    variant: str
    stage: str
    method: str
    model: dict[str, Any]  # {"name", "kwargs", "input_shape", "num_classes"}
    dataset: str
    seed: int
    avg_weight_bits: float
    act_bits: int | None
    sparsity: float
    params: int  # stored nonzero parameters
    deploy: Form
    sim: Form | None = None
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, d: dict) -> "Manifest":
        d = dict(d)
        d["deploy"] = Form(**d["deploy"])
        d["sim"] = Form(**d["sim"]) if d.get("sim") else None
        return cls(**d)


def model_spec(name: str, kwargs: dict, input_shape, num_classes: int) -> dict:
    return {"name": name, "kwargs": dict(kwargs), "input_shape": list(input_shape), "num_classes": int(num_classes)}


def write_variant(folder: str | Path, manifest: Manifest) -> Path:
    """Write ``manifest.json`` beside artifact files that must already be in ``folder``."""
    folder = Path(folder)
    for form in (manifest.deploy, manifest.sim):
        if form is None:
            continue
        for f in form.files:
            if not (folder / f).is_file():
                raise FileNotFoundError(f"variant {manifest.variant}: artifact {folder / f} was not written")
    (folder / MANIFEST).write_text(manifest.to_json())
    return folder


def read_manifest(folder: str | Path) -> Manifest:
    path = Path(folder) / MANIFEST
    try:
        return Manifest.from_dict(json.loads(path.read_text()))
    except (OSError, json.JSONDecodeError, TypeError, KeyError) as e:
        raise ValueError(f"{path}: not a valid variant manifest ({type(e).__name__}: {e}); rerun the stage that wrote it") from None


def discover(root: str | Path = "variants") -> list[tuple[Path, Manifest]]:
    """All variants under ``root``, sorted by stage then name."""
    root = Path(root)
    found = [(p.parent, read_manifest(p.parent)) for p in sorted(root.glob(f"*/*/{MANIFEST}"))]
    names = [m.variant for _, m in found]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ValueError(f"duplicate variant names under {root}: {sorted(dup)}")
    return found


def write_fp32_variant(folder: str | Path, model, *, variant: str, stage: str, method: str, spec: dict, dataset: str,
                       seed: int, notes: str, runtime: str = "torch-eager", extra: dict | None = None) -> Manifest:
    """A plain fp32 model as a variant: ``model.safetensors`` (its state dict) + the manifest."""
    from compress.checkpoint import save_state_dict
    from compress.models import count_params

    folder = Path(folder)
    save_state_dict(model, folder / "model.safetensors")
    man = Manifest(variant=variant, stage=stage, method=method, model=spec, dataset=dataset, seed=seed, avg_weight_bits=32.0,
                   act_bits=None, sparsity=0.0, params=count_params(model, nonzero=True),
                   deploy=Form(runtime=runtime, files=["model.safetensors"]), notes=notes, extra=dict(extra or {}))
    write_variant(folder, man)
    return man


def artifact_bytes(folder: str | Path, form: Form) -> int:
    return sum((Path(folder) / f).stat().st_size for f in form.files)
