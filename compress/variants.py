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


def one_line(text: str, limit: int = 200) -> str:
    """``text`` squeezed onto one line (whitespace runs -> one space), cut to ``limit`` characters."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


class ArtifactError(ValueError):
    """A variant's artifact file is missing or cannot be read back.

    ``str(e)`` is one line naming the variant (when known), the file, what is wrong with it and
    the stage that rebuilds it, e.g.::

        variant ptq-w4a8-minmax: variants/ptq/ptq-w4a8-minmax/model.cspk is corrupt (zlib: incomplete or
        truncated stream); rebuild it: dvc repro ptq

    Low-level readers raise it with ``path`` and ``problem`` only (they do not know the variant);
    :func:`compress.runtimes.load_predictor` re-raises it with the variant and its stage.
    """

    def __init__(self, path: str | Path, problem: str, variant: str | None = None, stage: str | None = None):
        self.path, self.problem, self.variant, self.stage = Path(path), one_line(problem, 300), variant, stage
        where = f"variant {variant}: " if variant else ""
        fix = f"rebuild it: dvc repro {stage}" if stage else "rerun the stage that wrote it"
        super().__init__(f"{where}{self.path} {self.problem}; {fix}")

    def of_variant(self, variant: str, stage: str) -> ArtifactError:
        return ArtifactError(self.path, self.problem, variant, stage)


def corrupt(path: str | Path, reason: str) -> ArtifactError:
    """The error for a file that exists but cannot be decoded: ``<path> is corrupt (<reason>)``."""
    return ArtifactError(path, f"is corrupt ({one_line(reason, 160)})")


def missing(path: str | Path) -> ArtifactError:
    return ArtifactError(path, "is missing")


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
    def from_dict(cls, d: dict) -> Manifest:
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
    """The manifest of the variant in ``folder`` (``variants/<stage>/<variant>``); a missing or
    invalid file is an :class:`ArtifactError` naming the variant and the stage that rebuilds it."""
    folder = Path(folder)
    path = folder / MANIFEST
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ArtifactError(path, "is missing", folder.name, folder.parent.name) from None
    except OSError as e:
        raise ArtifactError(path, f"cannot be read ({e.strerror or e})", folder.name, folder.parent.name) from None
    try:
        return Manifest.from_dict(json.loads(text))
    except (json.JSONDecodeError, TypeError, KeyError, AttributeError) as e:
        raise ArtifactError(path, f"is not a valid variant manifest ({type(e).__name__}: {e})", folder.name,
                            folder.parent.name) from None


def scan(root: str | Path = "variants") -> tuple[list[tuple[Path, Manifest]], list[ArtifactError]]:
    """(variants, broken): every variant under ``root`` with a readable manifest, sorted by stage
    then name, and one :class:`ArtifactError` per variant folder whose manifest cannot be read.
    Two variants with one name are a ValueError (the table would be ambiguous)."""
    root = Path(root)
    found, broken = [], []
    folders = sorted(p for p in root.glob("*/*") if p.is_dir() and not p.name.startswith(".")
                     and not p.parent.name.startswith("."))
    for folder in folders:
        if not (folder / MANIFEST).exists() and not any(folder.iterdir()):
            continue  # an empty folder is not a variant
        try:
            found.append((folder, read_manifest(folder)))
        except ArtifactError as e:
            broken.append(e)
    names = [m.variant for _, m in found]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ValueError(f"duplicate variant names under {root}: {sorted(dup)}")
    return found, broken


def discover(root: str | Path = "variants") -> list[tuple[Path, Manifest]]:
    """All variants under ``root``, sorted by stage then name; the first broken manifest raises."""
    found, broken = scan(root)
    if broken:
        raise broken[0]
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
