"""Presets (presets/*.yaml) merged onto params.yaml by `python -m stages.preset`: valid, merged as documented,
written only after validation, comments of untouched lines kept. Every test works on tmp_path copies."""
import difflib
import subprocess
import sys

import pytest
import yaml

from compress.config import validate_params
from stages import preset as ps
from tests.conftest import ROOT

PRESETS = sorted((ROOT / "presets").glob("*.yaml"))
RAW = yaml.safe_load((ROOT / "params.yaml").read_text())


@pytest.fixture
def params(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_bytes((ROOT / "params.yaml").read_bytes())
    return path


def _presets(tmp_path, **files):
    d = tmp_path / "presets"
    d.mkdir()
    for name, text in files.items():
        (d / f"{name}.yaml").write_text(text)
    return d


def _run(capsys, *argv):
    rc = ps.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


# --------------------------------------------------------------------------- the presets themselves
def test_there_is_a_paper_preset():
    assert "paper" in [p.stem for p in PRESETS]


@pytest.mark.parametrize("path", PRESETS, ids=[p.stem for p in PRESETS])
def test_every_preset_validates_merged_onto_params_yaml(path, params):
    """Every key of every preset is known and valid on top of params.yaml, and the written file parses to that merge."""
    preset = yaml.safe_load(path.read_text())
    assert isinstance(preset, dict) and preset
    merged = ps.deep_merge(RAW, preset)
    validate_params(merged, source=path.name)
    r = ps.apply(path.stem, params)
    assert r["merged"] == merged and yaml.safe_load(r["new_text"]) == merged
    assert r["comments_kept"], f"{path.name}: the line editor fell back to plain YAML on params.yaml"
    assert r["changes"], f"{path.name} changes nothing in params.yaml"
    validate_params(yaml.safe_load(r["new_text"]))


def test_paper_preset_is_the_papers_regimes():
    from compress.prune.config import PRESETS as LOTTERY_PRESETS
    from compress.prune.imp import PAPER

    P = validate_params(ps.deep_merge(RAW, yaml.safe_load((ROOT / "presets" / "paper.yaml").read_text())))
    lt = P.lottery
    assert lt.preset == "paper" and lt.trainer().max_iterations == LOTTERY_PRESETS["paper"]["iterations"] == 50_000
    assert lt.trainer().patience is None  # early stop = argmin over the whole run
    assert lt.seeds == PAPER["seeds"] and set(lt.controls) == set(PAPER["controls_at"]) and lt.controls_at is None
    assert lt.controls_max_remaining == 1.0  # controls at every level
    b = P.binary
    assert b.modes == ["det", "stoch"] and b.seeds == [0, 1, 2] and b.fp32_seeds == [0] and b.epochs >= 20
    assert "lenet5-caffe-100x" in dict(P.recipes.items())
    assert set(dict(P.recipes.items())) >= set(RAW["recipes"])  # merged in, the other recipes kept


def test_every_preset_section_is_commented_with_its_source():
    """Each top-level key of a preset has comment lines right above it (source and cost)."""
    for path in PRESETS:
        lines = path.read_text().splitlines()
        for i, line in enumerate(lines):
            if line and not line.startswith((" ", "#")):
                assert i > 0 and lines[i - 1].startswith("#"), f"{path.name}:{i + 1}: {line!r} has no comment above it"


# --------------------------------------------------------------------------- merge semantics
def test_merge_nested_list_null_and_empty():
    base = {"a": {"x": 1, "y": {"p": 1, "q": 2}, "l": [1, 2, 3], "n": 5}, "b": 7}
    over = {"a": {"y": {"q": 3, "r": 4}, "l": [9], "n": None, "z": {"new": True}}, "c": {}}
    merged = ps.deep_merge(base, over)
    assert merged == {"a": {"x": 1, "y": {"p": 1, "q": 3, "r": 4}, "l": [9], "n": None, "z": {"new": True}},
                      "b": 7, "c": {}}
    assert "n" in merged["a"] and merged["a"]["n"] is None  # null sets the key to null, it does not delete it
    assert base == {"a": {"x": 1, "y": {"p": 1, "q": 2}, "l": [1, 2, 3], "n": 5}, "b": 7}  # inputs untouched
    assert ps.deep_merge(base, {"a": {}}) == base  # {} changes nothing
    assert ps.deep_merge({"a": [1]}, {"a": {"k": 1}}) == {"a": {"k": 1}}  # a mapping replaces a non-mapping
    assert ps.deep_merge({"a": {"k": 1}}, {"a": 3}) == {"a": 3}
    # what --check reports: the value written in params.yaml, else the typed default; {} reports nothing
    eff = {"a": {"x": 1, "y": 2}}
    assert ps.changes({"a": {"x": 1}}, eff, {"a": {}}) == []
    assert ps.changes({"a": {"x": 1}}, eff, {"a": {"x": 1, "y": None}}) == [("a.y", ps._Default(2), None)]
    assert [(k, str(o), n) for k, o, n in ps.changes({"a": {"x": 1}}, eff, {"a": {"x": 5}, "b": {"c": 1}})] == [
        ("a.x", "1", 5), ("b", "<absent>", {"c": 1})]


def test_null_in_a_preset_reaches_the_validated_params(tmp_path, params, capsys):
    d = _presets(tmp_path, nul="# null check\nlottery: {controls_at: null}\n")
    rc, _, err = _run(capsys, "nul", "--params", params, "--presets", d)
    assert rc == 0, err
    assert yaml.safe_load(params.read_text())["lottery"] == {"controls_at": None}
    assert validate_params(yaml.safe_load(params.read_text())).lottery.controls_at is None


# --------------------------------------------------------------------------- the command
def test_apply_changes_only_the_lines_of_the_keys_it_sets(params, capsys):
    before = params.read_text()
    rc, out, err = _run(capsys, "paper", "--params", params)
    assert rc == 0, err
    after = params.read_text()
    assert yaml.safe_load(after) == ps.deep_merge(RAW, yaml.safe_load((ROOT / "presets" / "paper.yaml").read_text()))
    removed = [ln[2:] for ln in difflib.ndiff(before.splitlines(), after.splitlines()) if ln.startswith("- ")]
    # only the two one-line sections the preset rewrites lose their line; every other line (comments too) stays
    assert [r.split(":")[0] for r in removed] == ["binary", "lottery"], removed
    assert after.splitlines()[0].startswith(ps.HEADER + "paper")
    assert "binary.epochs: 4 -> 20" in out and "git checkout" in out
    new = after.splitlines()
    assert any(ln.startswith("lottery:") and "# preset paper" in ln for ln in new)
    assert any(ln.startswith("  lenet5-caffe-100x:") and "# preset paper" in ln for ln in new)
    assert "  controls_at: null" in "\n".join(new)
    # a second application finds nothing to do and leaves the file as it is
    rc, out, _ = _run(capsys, "paper", "--params", params)
    assert rc == 0 and "nothing to write" in out and params.read_text() == after


def test_check_prints_the_change_and_writes_nothing(params, capsys):
    before = params.read_bytes()
    rc, out, err = _run(capsys, "paper", "--params", params, "--check")
    assert rc == 0, err
    assert params.read_bytes() == before
    assert "binary.epochs: 4 -> 20" in out and "lottery.seeds: <default> [0, 1, 2] -> [0, 1, 2, 3, 4]" in out
    assert "+  controls_at: null" in out  # the unified diff of the text
    assert "nothing written (--check)" in out


@pytest.mark.parametrize("text,key", [
    ("# bad epochs\nbinary: {epochs: 0}\n", "binary.epochs"),
    ("# misspelt key\nlottery: {sedes: [0]}\n", "lottery.sedes"),
    ("# bad mode\nbinary: {modes: [det, sign]}\n", "binary.modes"),
    ("# bad recipe\nrecipes: {lenet5: {steps: [{step: prune, sparsity: 1.5}]}}\n", "recipes.lenet5"),
])
def test_a_bad_preset_is_one_line_naming_the_key_and_nothing_is_written(tmp_path, params, capsys, text, key):
    d = _presets(tmp_path, bad=text)
    before = params.read_bytes()
    rc, out, err = _run(capsys, "bad", "--params", params, "--presets", d)
    assert rc == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: ") and key in err, err
    assert params.read_bytes() == before
    rc, _, err = _run(capsys, "bad", "--params", params, "--presets", d, "--check")
    assert rc == 2 and key in err and params.read_bytes() == before


def test_an_unknown_name_lists_the_presets_in_one_line(tmp_path, params, capsys):
    d = _presets(tmp_path, alpha="# first\nseed: 1\n", beta="# second\nseed: 2\n")
    before = params.read_bytes()
    rc, out, err = _run(capsys, "gamma", "--params", params, "--presets", d)
    assert rc == 2 and out == "" and params.read_bytes() == before
    assert err.strip().splitlines() == ["error: unknown preset 'gamma'; available: alpha, beta"]
    rc, _, err = _run(capsys, "nope", "--params", params)  # the repo's presets
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "paper" in err


def test_list_shows_each_presets_first_comment_line(tmp_path, capsys):
    d = _presets(tmp_path, alpha="# the first one\n# more\nseed: 1\n", beta="seed: 2  # no leading comment\n")
    rc, out, _ = _run(capsys, "--list", "--presets", d)
    assert rc == 0 and out.splitlines() == ["alpha  the first one", "beta   no leading comment"]


def test_list_runs_as_a_module():
    r = subprocess.run([sys.executable, "-m", "stages.preset", "--list"], cwd=ROOT, capture_output=True, text=True,
                       timeout=120, check=False)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("paper  The `paper` preset")


# --------------------------------------------------------------------------- the line editor
PARAMS = """\
# top comment
seed: 0                 # the seed

train: {epochs: 12, lr: 0.002}   # inline section
prune:                  # block section
  finetune: {lr: 0.002}   # kept comment
  variants:
    a: {sparsity: 0.8}  # variant a
    # a comment inside
    b: {}

hawq: {}                # untouched
"""
PRESET = """\
# a preset
train:
  epochs: 30            # longer
prune:
  variants:
    b: {sparsity: 0.95}     # b replaced
    c:                      # c added
      sparsity: 0.5
# new section comment
obd:
  retrain: {max_iterations: 400}
"""


def test_line_editor_merges_into_block_and_inline_mappings():
    raw, pre = yaml.safe_load(PARAMS), yaml.safe_load(PRESET)
    merged = ps.deep_merge(raw, pre)
    text, kept = ps.render(PARAMS, PRESET, "t", merged)
    assert kept and yaml.safe_load(text) == merged
    lines = text.splitlines()
    for ln in ["# top comment", "seed: 0                 # the seed", "prune:                  # block section",
               "  finetune: {lr: 0.002}   # kept comment", "    a: {sparsity: 0.8}  # variant a",
               "    # a comment inside", "hawq: {}                # untouched"]:
        assert ln in lines, ln
    assert "  epochs: 30            # longer" in lines and "  lr: 0.002" in lines  # inline -> block, old keys kept
    assert lines[lines.index("  epochs: 30            # longer") - 1].startswith("train:")
    assert "# preset t" in lines[lines.index("  epochs: 30            # longer") - 1]
    assert "    b: {sparsity: 0.95}     # preset t: b replaced" in lines
    c = lines.index("    c:                      # preset t: c added")
    assert lines[c + 1] == "      sparsity: 0.5" and lines.index("    # a comment inside") < c
    assert lines.index("# new section comment") + 1 == lines.index("obd:   # preset t")
    assert lines[0].startswith(ps.HEADER + "t ")
    # applying a second preset names both in the header
    text2, _ = ps.render(text, "# other\nseed: 3\n", "u", ps.deep_merge(merged, {"seed": 3}))
    assert text2.splitlines()[0].startswith(ps.HEADER + "t, u ") and text2.count(ps.HEADER) == 1


def test_line_editor_falls_back_to_plain_yaml_on_a_layout_it_does_not_handle():
    odd = "---\n" + PARAMS  # a document marker: not a block-mapping key line
    merged = ps.deep_merge(yaml.safe_load(odd), yaml.safe_load(PRESET))
    text, kept = ps.render(odd, PRESET, "t", merged)
    assert not kept and yaml.safe_load(text) == merged and "comments of the previous params.yaml were dropped" in text


def test_comments_are_found_outside_quotes_only():
    assert ps._split_comment("a: 'x # y'  # z") == ("a: 'x # y'", "# z")
    assert ps._split_comment('a: "#"') == ('a: "#"', "")
    assert ps._split_comment("a: b#c") == ("a: b#c", "")


@pytest.mark.parametrize("path", PRESETS, ids=[p.stem for p in PRESETS])
def test_a_preset_applied_params_yaml_still_restates_no_default(path, monkeypatch):
    """params.yaml's own rule (tests/test_params.py) holds after the preset: it writes no typed default."""
    import tests.test_params as tp

    monkeypatch.setattr(tp, "RAW", ps.deep_merge(RAW, yaml.safe_load(path.read_text())))
    tp.test_no_key_restates_its_default()
    tp.test_no_recipe_step_restates_its_default()
