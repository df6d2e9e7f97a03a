"""The generated files: dvc.yaml from stages/pipeline.py (each stage's code deps are the project modules its
script uses, found by reading imports; no module is executed) and docs/PARAMS.md from the config classes.

    python -m stages.generate            # rewrite dvc.yaml
    python -m stages.generate --check    # exit 1 (and say what differs) when dvc.yaml is stale

A stage depends on every project file reachable from ``stages/<name>.py`` through ``import`` statements
(module level or inside functions), the ``__init__.py`` of every package on the way, and the modules that
registries load by name. A registry is a module-level constant whose name ends in ``_MODULES`` holding dotted
module names (a list, tuple or the values of a dict), e.g. ``compress.config.SECTION_MODULES``; a module that
calls ``importlib.import_module`` depends on the modules of every registry it defines or imports by name
(a module that only reads a registry's keys, e.g. to validate a name, does not). Loading modules by any other
dynamic means is not allowed in the project, because DVC could not see it.
"""
from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

from stages.pipeline import STAGES, TOP_PLOTS

ROOT = Path(__file__).resolve().parents[1]

PACKAGES = ("compress", "stages", "studies", "dashboards")


def module_file(root: Path, dotted: str) -> Path | None:
    """``compress.quant.ptq`` -> compress/quant/ptq.py (or the package's __init__.py); None if not ours."""
    if dotted.split(".")[0] not in PACKAGES:
        return None
    base = root.joinpath(*dotted.split("."))
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    return None


def _module_name(root: Path, path: Path) -> str:
    rel = path.relative_to(root).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _registry_modules(tree: ast.Module) -> list[str]:
    """Dotted names held by module-level ``*_MODULES`` constants."""
    out: list[str] = []
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        if not any(isinstance(t, ast.Name) and t.id.endswith("_MODULES") for t in targets) or node.value is None:
            continue
        value = node.value
        items = value.values if isinstance(value, ast.Dict) else getattr(value, "elts", [])
        out += [i.value for i in items if isinstance(i, ast.Constant) and isinstance(i.value, str)]
    return out


def _calls_import_module(tree: ast.Module) -> bool:
    return any(isinstance(n, ast.Call) and (getattr(n.func, "attr", None) == "import_module"
                                            or getattr(n.func, "id", None) == "import_module") for n in ast.walk(tree))


def _imports(root: Path, path: Path) -> set[str]:
    """Dotted names imported by the file (relative imports resolved), plus registry modules it loads."""
    tree = ast.parse(path.read_text(), filename=str(path))
    me = _module_name(root, path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    loads = _calls_import_module(tree)
    names: set[str] = set(_registry_modules(tree)) if loads else set()
    for node in ast.walk(tree):
        if loads and isinstance(node, ast.ImportFrom) and node.module and not node.level:
            src = module_file(root, node.module)
            if src is not None and any(a.name.endswith("_MODULES") for a in node.names):
                names.update(_registry_modules(ast.parse(src.read_text())))
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            names.add(mod)
            names.update(f"{mod}.{a.name}" for a in node.names)  # `from pkg import submodule`
    return names


def _closure(root: Path, start: str) -> frozenset[Path]:
    seen: set[Path] = set()
    todo = [start]
    while todo:
        dotted = todo.pop()
        parts = dotted.split(".")
        for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__ too
            f = module_file(root, ".".join(parts[:i]))
            if f is not None and f not in seen:
                seen.add(f)
                todo += sorted(_imports(root, f))
    return frozenset(seen)


def stage_code_deps(stage: str, root: Path) -> list[str]:
    """Sorted project files (relative paths) the script ``stages/<stage>.py`` can execute."""
    root = Path(root).resolve()
    if module_file(root, f"stages.{stage}") is None:
        raise FileNotFoundError(f"stages/{stage}.py does not exist (declared in stages/pipeline.py)")
    return sorted(str(p.relative_to(root)) for p in _closure(root, f"stages.{stage}"))


def uncovered(stage: str, root: Path, deps: list[str]) -> list[str]:
    """Files the stage imports that ``deps`` (files or folders) do not cover."""
    covered = [d.rstrip("/") for d in deps]
    return [f for f in stage_code_deps(stage, root)
            if not any(f == d or f.startswith(d + "/") for d in covered)]


HEADER = """\
# GENERATED by `python -m stages.generate` from stages/pipeline.py: edit that file, not this one.
# Each stage names the params sections it reads, the data it reads and writes, and (as deps) every project
# module its script imports, so editing one module reruns exactly the stages that use it.
"""


def render(root: Path = ROOT) -> str:
    """dvc.yaml as text."""
    import yaml

    stages = {}
    for name, s in STAGES.items():
        cmd = f"python -m stages.{name}" + (" ${key}" if s.foreach else "")
        d: dict = {"cmd": cmd, "deps": [*stage_code_deps(name, root), *s.deps], "params": list(s.params)}
        if s.outs:
            d["outs"] = [o.path if o.cache else {o.path: {"cache": False}} for o in s.outs]
        if s.metrics:
            d["metrics"] = [{m: {"cache": False}} for m in s.metrics]
        if s.plots:
            d["plots"] = [{p.path: {"cache": False, **p.props()}} for p in s.plots]
        stages[name] = {"foreach": "${" + s.foreach + "}", "do": d} if s.foreach else d

    class Dumper(yaml.SafeDumper):
        def increase_indent(self, flow=False, indentless=False):  # indent list items under their key
            return super().increase_indent(flow, False)

    body = yaml.dump({"stages": stages, "plots": TOP_PLOTS}, Dumper=Dumper, sort_keys=False, width=120)
    return HEADER + body


def _type_name(annotation) -> str:

    text = str(annotation).replace("typing.", "").replace("<class '", "").replace("'>", "")
    return text if getattr(annotation, "__origin__", None) or "|" in text or "[" in text else getattr(annotation, "__name__", text)


def _default(field) -> str:
    import json

    value = field.get_default(call_default_factory=True)
    if hasattr(value, "model_dump"):
        return "(a section: see below)"
    return json.dumps(value.model_dump(mode="json") if hasattr(value, "model_dump") else value, default=str)


def render_params() -> str:
    """docs/PARAMS.md: every params.yaml key with its type, default and description, from the config classes."""
    import typing

    from pydantic import BaseModel

    from compress.config import FitConfig, all_sections

    lines = ["<!-- GENERATED by `python -m stages.generate` from the config classes (compress/config.py and each family's",
             "config.py): edit their Field descriptions, not this file. -->", "# params.yaml reference", "",
             "Every key with its type and typed default. params.yaml states only what differs from these defaults; a",
             "training block (a `FitConfig`) starts from FitConfig's defaults, takes the `fit` section, then its own keys.",
             "Validation happens before any work: a bad value is one line naming the key, the value and what is allowed.", "",
             "- `seed` (int, default `0`): drives every split, initialisation, shuffle and stochastic rounding", ""]

    def table(model: type[BaseModel], prefix: str, nested: list):
        rows = ["| key | type | default | description |", "|---|---|---|---|"]
        inherited = issubclass(model, FitConfig) and model is not FitConfig
        if inherited:
            rows.append(f"| `{prefix}.<fit key>` | training block | `fit` | every key of `fit` (defaults there) |")
        for name, f in model.model_fields.items():
            if inherited and name in FitConfig.model_fields:
                continue
            key = f"{prefix}.{name}"
            sub = next((t for t in (f.annotation, *typing.get_args(f.annotation))
                        if isinstance(t, type) and issubclass(t, BaseModel)), None)
            if sub is not None and issubclass(sub, FitConfig) and not model is FitConfig:
                rows.append(f"| `{key}` | training block | `fit` | {f.description or ''} (keys: see `fit`) |")
                continue
            if sub is not None and not (typing.get_origin(f.annotation) in (dict, list)):
                nested.append((key, sub, f.description))
                rows.append(f"| `{key}` | section | see below | {f.description or ''} |")
                continue
            desc = (f.description or "").replace("|", "/")
            rows.append(f"| `{key}` | `{_type_name(f.annotation).replace('|', '/')}` | `{_default(f)}` | {desc} |")
        return rows

    for name, model in all_sections().items():
        doc = (model.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ")
        lines += [f"## `{name}`", "", doc, ""] if doc and not doc.startswith("Usage docs") else [f"## `{name}`", ""]
        nested: list = []
        lines += table(model, name, nested) + [""]
        while nested:
            key, sub, desc = nested.pop(0)
            lines += [f"### `{key}`", "", (desc or ""), ""]
            lines += table(sub, key, nested) + [""]
    return "\n".join(lines)


GENERATED = {"dvc.yaml": render, "docs/PARAMS.md": render_params}


def main(argv: list[str] | None = None) -> int:
    import difflib

    ap = argparse.ArgumentParser(description="write the generated files: dvc.yaml (stages/pipeline.py) and docs/PARAMS.md "
                                             "(the config classes)")
    ap.add_argument("--check", action="store_true", help="do not write; exit 1 when a generated file is stale")
    args = ap.parse_args(argv)
    stale = 0
    for rel, fn in GENERATED.items():
        text, path = fn(), ROOT / rel
        old = path.read_text() if path.exists() else ""
        if args.check:
            if old != text:
                diff = difflib.unified_diff(old.splitlines(), text.splitlines(), f"{rel} (committed)", f"{rel} (generated)",
                                            lineterm="", n=1)
                print("\n".join(list(diff)[:40]))
                print(f"error: {rel} is stale: run `python -m stages.generate` and commit it", file=sys.stderr)
                stale = 1
        elif old != text:
            path.write_text(text)
            print(f"wrote {rel}")
    return stale


if __name__ == "__main__":
    raise SystemExit(main())
