"""The stage layer: generated files are current, code deps cannot go stale, stages stay thin and path-free."""
import ast
import shutil
from pathlib import Path

import yaml

from stages import generate, pipeline
from tests.conftest import ROOT

STAGE_FILES = sorted(p for p in (ROOT / "stages").glob("*.py") if p.stem in pipeline.STAGES)


def test_generated_files_are_current():
    """dvc.yaml and docs/PARAMS.md equal what `python -m stages.generate` writes (run it after any edit)."""
    assert generate.main(["--check"]) == 0


def test_every_declared_stage_has_a_script_and_every_script_a_declaration():
    assert {p.stem for p in STAGE_FILES} == set(pipeline.STAGES)
    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    assert list(dvc) == list(pipeline.STAGES)


def test_each_stage_depends_on_every_module_it_imports():
    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for name in pipeline.STAGES:
        assert generate.uncovered(name, ROOT, dvc[name].get("do", dvc[name])["deps"]) == [], name


def test_a_planted_import_is_caught(tmp_path):
    """A stage that starts importing a module its deps do not list makes the check fail and names the module."""
    for pkg in ("compress", "stages", "studies", "dashboards"):
        shutil.copytree(ROOT / pkg, tmp_path / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    committed = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["prune"]["deps"]  # a plain stage
    assert "compress/structured/butterfly.py" not in committed
    script = tmp_path / "stages" / "prune.py"
    script.write_text(script.read_text().replace("from __future__ import annotations\n", "from __future__ import annotations\n\n"
                                                 "from compress.structured import butterfly  # noqa: F401\n", 1))
    assert generate.uncovered("prune", tmp_path, committed) == ["compress/structured/butterfly.py"]
    assert generate.render(tmp_path) != (ROOT / "dvc.yaml").read_text()
    # an import inside a function counts too
    script.write_text(script.read_text().replace("\nfrom compress.structured import butterfly  # noqa: F401\n", "")
                      + "\n\ndef _later():\n    import compress.quant.sr_training  # noqa: F401\n")
    assert generate.uncovered("prune", tmp_path, committed) == ["compress/quant/sr_training.py"]


def test_registry_modules_count_only_where_they_are_loaded():
    """SECTION_MODULES (loaded by compress.config for every stage) are deps of every stage; the study modules are
    deps of the search stage only, which loads them by name."""
    prepare = generate.stage_code_deps("prepare", ROOT)
    assert "compress/hessian/config.py" in prepare and "studies/bits.py" not in prepare
    assert "studies/bits.py" in generate.stage_code_deps("search", ROOT)


def test_stage_scripts_are_thin():
    long = {p.name: n for p in STAGE_FILES if (n := len(p.read_text().splitlines())) > 80}
    assert not long, f"stage scripts over 80 lines (move logic into compress/): {long}"


def test_stage_scripts_name_no_paths():
    """Every path a stage reads or writes comes from stages/pipeline.py, never a literal in the script."""
    prefixes = ("data/", "models/", "variants/", "metrics/", "plots/", "reports/", "calibration/", "hawq/", "search/")
    found = []
    for p in STAGE_FILES + [ROOT / "stages" / "common.py"]:
        tree = ast.parse(p.read_text())
        docs = {id(n.body[0].value) for n in ast.walk(tree) if isinstance(n, (ast.Module, ast.FunctionDef, ast.ClassDef))
                and n.body and isinstance(n.body[0], ast.Expr)}
        for node in ast.walk(tree):
            if (isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith(prefixes)
                    and id(node) not in docs):
                found.append(f"{p.name}:{node.lineno}: {node.value!r}")
    assert not found, found


def test_declared_outputs_are_distinct():
    paths = [o.path for s in pipeline.STAGES.values() for o in s.outs] + [m for s in pipeline.STAGES.values() for m in s.metrics]
    assert len(paths) == len(set(paths))
    assert all(Path(p).parts[0] not in ("compress", "stages", "studies", "dashboards") for p in paths)


def test_the_library_draws_nothing():
    """compress/ imports no plotting (figures are dashboards/'s) and no DVC / MLflow / Optuna (stages' and studies')."""
    banned = {"matplotlib", "seaborn", "dvc", "mlflow", "optuna", "stages", "dashboards", "studies"}
    found = []
    for path in sorted((ROOT / "compress").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
            found += [f"{path.relative_to(ROOT)}: {n}" for n in names if n.split(".")[0] in banned]
    assert not found, found
