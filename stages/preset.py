"""Apply a named preset (presets/NAME.yaml) to params.yaml: merge, validate, then write.

    python -m stages.preset paper              # merge presets/paper.yaml into params.yaml (validated first)
    python -m stages.preset paper --check      # print what would change; write nothing
    python -m stages.preset --list             # the presets and the first comment line of each
    git diff params.yaml                       # what a preset changed;  git checkout params.yaml goes back

Merge rules (a preset is a partial params.yaml):

1. a mapping merges into the mapping of params.yaml key by key, recursively;
2. a list or a scalar replaces the value (``seeds: [0, 1, 2, 3, 4]`` is the whole list, not appended);
3. ``key: null`` sets the key to null -- it does not delete it (several keys mean something by null, e.g.
   ``lottery.controls_at: null`` = every round); to go back to a typed default delete the key by hand;
4. ``key: {}`` changes nothing.

The merged mapping is validated with :func:`compress.config.validate_params` (what every stage runs on
params.yaml, before its tracking-store preflight) before anything is written; a bad value is the
validator's one line naming the key, and params.yaml is left byte-identical.

Writing keeps every line the preset does not touch, comments included: the file is edited by its lines,
block mapping by block mapping. A key the preset changes is rewritten in place: copied from the preset's
own text (its comments included) when it takes the preset's value whole, otherwise re-rendered as a block
whose keys from the preset come from the preset's text. The preset's comment lines above that key come
along, and the key line's comment becomes ``# preset NAME[: the preset's comment]`` (the old comment of
that one line is dropped; ``git diff`` shows it). Keys the preset adds go after the last key of their
mapping. A first line ``# Preset applied: ...`` names the presets applied so far. The written text is
parsed back and must equal the merged mapping; if the line editor cannot guarantee that (a layout it
does not handle, e.g. a flow mapping over several lines), the file is written as plain YAML with that
header instead, and the command says that the comments were dropped.
"""
from __future__ import annotations

import argparse
import copy
import difflib
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

PRESETS_DIR = Path(__file__).resolve().parents[1] / "presets"
HEADER = "# Preset applied: "


class PresetError(ValueError):
    """A preset that cannot be applied; ``str(e)`` is one line."""


# --------------------------------------------------------------------------- merge
def deep_merge(base: Any, over: Any) -> Any:
    """``over`` merged onto ``base``: mappings key by key (recursively), anything else replaces (null included)."""
    if isinstance(base, dict) and isinstance(over, dict):
        out = copy.deepcopy(base)
        for k, v in over.items():
            out[k] = deep_merge(base[k], v) if k in base else copy.deepcopy(v)
        return out
    return copy.deepcopy(over)


def changes(raw: dict, effective: dict, preset: dict, path: tuple = ()) -> list[tuple[str, Any, Any]]:
    """``(dotted key, old value, new value)`` for every value the preset sets differently from ``raw``.

    The old value is the one written in params.yaml, else the validated (typed default) one from
    ``effective`` (shown as ``<default> value``), else ``<absent>``.
    """
    out = []
    for k, v in preset.items():
        here, old_present = (*path, k), isinstance(raw, dict) and k in raw
        old = raw[k] if old_present else None
        eff = effective.get(k, _ABSENT) if isinstance(effective, dict) else _ABSENT
        if isinstance(v, dict) and (isinstance(old, dict) or not old_present and isinstance(eff, dict)):
            out += changes(old if old_present else {}, eff if isinstance(eff, dict) else {}, v, here)
            continue
        if old_present:
            if old != v:
                out.append((".".join(map(str, here)), old, v))
        elif eff != v:
            out.append((".".join(map(str, here)), _Default(eff) if eff is not _ABSENT else _ABSENT, v))
    return out


class _Absent:
    def __repr__(self) -> str:
        return "<absent>"


_ABSENT = _Absent()


@dataclass(frozen=True)
class _Default:
    value: Any

    def __str__(self) -> str:
        return f"<default> {_flow(self.value)}"


# --------------------------------------------------------------------------- the line editor
def _flow(value: Any) -> str:
    """One-line YAML of ``value`` (flow style)."""
    text = yaml.safe_dump([value], default_flow_style=True, width=10**9, sort_keys=False).strip()
    return text[1:-1]  # drop the brackets of the one-item list


def _split_comment(line: str) -> tuple[str, str]:
    """(code, comment): the comment starts at a ``#`` outside quotes that begins the line or follows a space."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1] in " \t"):
            return line[:i].rstrip(), line[i:]
    return line.rstrip(), ""


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _is_code(line: str) -> bool:
    s = line.strip()
    return bool(s) and not s.startswith("#")


_KEY = re.compile(r"""^(?P<key>"[^"]*"|'[^']*'|[^\s#:{}\[\],&*!|>'"%@`-][^#{}\[\],]*?|-[^\s#{}\[\],][^#{}\[\],]*?):(?:\s|$)""")


class _Opaque(Exception):
    """A layout the line editor does not handle; the caller re-renders that value."""


@dataclass
class _Entry:
    key: Any
    line: int       # index of the key line
    end: int        # one past the key's last value line (trailing blank and comment lines excluded)
    lead: int       # first of the comment lines right above the key line (== line when none)
    indent: int
    value: str      # the value text on the key line ('' for a block value)
    comment: str    # the key line's comment with its '#' ('' when none)


def _entries(lines: list[str], start: int, end: int) -> tuple[int, list[_Entry]]:
    """The keys of the block mapping in ``lines[start:end]`` (indent of its first code line); _Opaque otherwise."""
    first = next((i for i in range(start, end) if _is_code(lines[i])), None)
    if first is None:
        return 0, []
    indent, out = _indent(lines[first]), []
    for i in range(first, end):
        if not _is_code(lines[i]):
            continue
        ind = _indent(lines[i])
        if ind > indent and out:
            out[-1].end = i + 1
            continue
        code, comment = _split_comment(lines[i][indent:])
        m = _KEY.match(code) if ind == indent else None
        if m is None:
            raise _Opaque(f"line {i + 1}")
        try:
            key = next(iter(yaml.safe_load(m.group("key") + ": null")))
        except (yaml.YAMLError, TypeError, StopIteration):
            raise _Opaque(f"line {i + 1}") from None
        lead = i
        while lead - 1 >= (out[-1].end if out else start) and lines[lead - 1].strip().startswith("#") \
                and _indent(lines[lead - 1]) == indent:
            lead -= 1
        out.append(_Entry(key, i, i + 1, lead, indent, code[m.end():].strip(), comment))
    return indent, out


def _children(lines: list[str], e: _Entry) -> tuple[int, list[_Entry]] | None:
    """A block-mapping value's keys, or None (an inline value, a block sequence, a layout not handled)."""
    if e.value:
        return None
    try:
        indent, entries = _entries(lines, e.line + 1, e.end)
    except _Opaque:
        return None
    return (indent, entries) if entries and indent > e.indent else None


def _reindent(line: str, shift: int) -> str:
    if not line.strip():
        return ""
    return " " * shift + line if shift >= 0 else line[min(-shift, _indent(line)):]


class _Editor:
    """Writes ``merged`` over the lines of params.yaml, copying what the preset leaves alone."""

    def __init__(self, name: str, params_lines: list[str], preset_lines: list[str]):
        self.name, self.lines, self.plines = name, params_lines, preset_lines

    def mark(self, preset_comment: str) -> str:
        text = preset_comment.lstrip("#").strip()
        return f"# preset {self.name}" + (f": {text}" if text else "")

    def with_comment(self, code: str, comment: str, column: int = 0) -> str:
        code = code.rstrip()
        if not comment:
            return code
        return (code.ljust(column) if len(code) < column else code + "   ") + comment

    def mapping(self, lines: list[str], start: int, end: int, old: dict, pre: dict, merged: dict,
                pnode: tuple[int, list[_Entry]] | None) -> list[str]:
        """The lines of a block mapping (``lines[start:end]``, keys of ``old``) with ``pre`` merged in."""
        indent, entries = _entries(lines, start, end)
        if [e.key for e in entries] != list(old):
            raise _Opaque("keys")
        pentries = {e.key: e for e in pnode[1]} if pnode else {}
        out, pos = [], start
        for e in entries:
            out += lines[pos:e.line]
            if e.key in pre:
                out += self.entry(e.key, old[e.key], True, pre[e.key], merged[e.key], indent, e, pentries.get(e.key))
            else:
                out += lines[e.line:e.end]
            pos = e.end
        for k, v in pre.items():
            if k not in old:
                out += self.entry(k, None, False, v, merged[k], indent, None, pentries.get(k))
        return out + lines[pos:end]

    def entry(self, key: Any, old: Any, present: bool, pre: Any, merged: Any, indent: int, e: _Entry | None,
              pe: _Entry | None, marked: bool = True) -> list[str]:
        """The lines of one key the preset sets: ``e`` its lines in params.yaml (None: inside a value being
        re-rendered), ``pe`` its lines in the preset; ``marked``: its key line ends in ``# preset NAME``."""
        pad = " " * indent
        if present and merged == old:
            return self.lines[e.line:e.end] if e is not None else [f"{pad}{_flow(key)}: {_flow(old)}"]
        comment = (self.mark(pe.comment if pe else "") if marked else pe.comment if pe else "")
        column = len(self.lines[e.line]) - len(e.comment) if e is not None and e.comment else 0
        if pe is not None and merged == pre:  # the preset's value whole: copy its text (comments included)
            copied = [_reindent(x, indent - pe.indent) for x in self.plines[pe.lead:pe.end]]
            k = pe.line - pe.lead
            copied[k] = self.with_comment(_split_comment(copied[k])[0], comment,
                                          len(copied[k]) - len(pe.comment) if pe.comment else column)
            return copied
        if present and isinstance(old, dict) and isinstance(pre, dict):  # a merge
            pnode = _children(self.plines, pe) if pe else None
            lead = [_reindent(x, indent - pe.indent) for x in self.plines[pe.lead:pe.line]] if pe else []
            if e is not None and _children(self.lines, e) is not None:  # a block mapping: keep its key line, edit its keys
                try:
                    return lead + self.lines[e.line:e.line + 1] + self.mapping(self.lines, e.line + 1, e.end, old, pre,
                                                                               merged, pnode)
                except _Opaque:
                    pass
            # inline ({a: 1}) or a layout not handled: a block of its keys, old order first, then the preset's new keys
            out = lead + [self.with_comment(f"{pad}{_flow(key)}:", comment, column)]
            pentries = {x.key: x for x in pnode[1]} if pnode else {}
            for k in merged:
                if k in pre:
                    out += self.entry(k, old.get(k), k in old, pre[k], merged[k], indent + 2, None, pentries.get(k), False)
                else:
                    out.append(f"{pad}  {_flow(k)}: {_flow(old[k])}")
            return out
        return [self.with_comment(f"{pad}{_flow(key)}: {_flow(merged)}", comment, column)]


def render(params_text: str, preset_text: str, name: str, merged: dict) -> tuple[str, bool]:
    """(new params.yaml text, comments kept).  The text parses back to ``merged`` exactly."""
    lines = params_text.splitlines()
    names: list[str] = []
    if lines and lines[0].startswith(HEADER):
        names = [n.strip() for n in lines[0][len(HEADER):].split("(", 1)[0].split(",") if n.strip()]
        lines = lines[1:]
    names += [name] if name not in names else []
    header = (f"{HEADER}{', '.join(names)} (python -m stages.preset; what it changed is marked `# preset NAME`): "
              "git diff params.yaml shows the change, git checkout params.yaml goes back")
    old = yaml.safe_load("\n".join(lines)) or {}
    pre = yaml.safe_load(preset_text) or {}
    plines = preset_text.splitlines()
    try:
        try:
            pnode = _entries(plines, 0, len(plines))
        except _Opaque:
            pnode = None
        body = _Editor(name, lines, plines).mapping(lines, 0, len(lines), old, pre, merged, pnode)
        text = "\n".join([header, *body]) + "\n"
        if yaml.safe_load(text) == merged:
            return text, True
    except (_Opaque, yaml.YAMLError):
        pass
    plain = yaml.safe_dump(merged, sort_keys=False, default_flow_style=None, width=120)
    return f"{header}\n# (written as plain YAML: the comments of the previous params.yaml were dropped)\n{plain}", False


# --------------------------------------------------------------------------- presets on disk
def available(presets_dir: Path = PRESETS_DIR) -> dict[str, str]:
    """{name: first comment line} of every presets/*.yaml."""
    out = {}
    for p in sorted(Path(presets_dir).glob("*.yaml")):
        comments = (_split_comment(ln)[1] for ln in p.read_text().splitlines())
        out[p.stem] = next((c.lstrip("#").strip() for c in comments if c.lstrip("#").strip()), "")
    return out


def load_preset(name: str, presets_dir: Path = PRESETS_DIR) -> tuple[dict, str, Path]:
    """(mapping, text, path) of presets/NAME.yaml; PresetError (one line) when unknown or not a YAML mapping."""
    names = available(presets_dir)
    path = Path(presets_dir) / f"{name}.yaml"
    if name not in names:
        raise PresetError(f"unknown preset {name!r}; available: {', '.join(names) or '(none in ' + str(presets_dir) + ')'}")
    text = path.read_text()
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise PresetError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise PresetError(f"{path}: expected a mapping of params sections at the top level, got {type(data).__name__}")
    return data, text, path


def apply(name: str, params: str | Path = "params.yaml", presets_dir: Path = PRESETS_DIR) -> dict:
    """Merge and validate; returns {old_text, new_text, merged, changes, comments_kept, source} (writes nothing).

    Raises PresetError (unknown preset, unreadable file) or compress.config.ConfigError (a merged value the
    stages would refuse), each one line.
    """
    from compress.config import validate_params

    params = Path(params)
    preset, preset_text, ppath = load_preset(name, presets_dir)
    if not params.exists():
        raise PresetError(f"{params}: file not found; run from the project root or pass --params PATH")
    old_text = params.read_text()
    try:
        raw = yaml.safe_load(old_text) or {}
    except yaml.YAMLError as e:
        raise PresetError(f"{params}: not valid YAML ({str(e).splitlines()[0]})") from None
    merged = deep_merge(raw, preset)
    source = f"{_shown(ppath)} merged onto {params}"
    validate_params(merged, source=source)
    effective = validate_params(raw, source=str(params)).model_dump(mode="json")
    new_text, kept = render(old_text, preset_text, name, merged) if merged != raw else (old_text, True)
    return {"old_text": old_text, "new_text": new_text, "merged": merged, "changes": changes(raw, effective, preset),
            "comments_kept": kept, "source": source}


def _shown(path: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _value(v: Any) -> str:
    text = str(v) if isinstance(v, (_Default, _Absent)) else _flow(v)
    return text if len(text) <= 100 else text[:97] + "..."


# --------------------------------------------------------------------------- CLI
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m stages.preset", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("name", nargs="?", help="a preset: presets/NAME.yaml")
    ap.add_argument("--params", default="params.yaml", help="params file to update (default: params.yaml)")
    ap.add_argument("--check", action="store_true", help="print what would change; write nothing")
    ap.add_argument("--list", action="store_true", help="list the presets with their first comment line")
    ap.add_argument("--presets", default=str(PRESETS_DIR), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    from compress.config import ConfigError

    if args.list:
        names = available(Path(args.presets))
        width = max(map(len, names), default=0)
        for n, first in names.items():
            print(f"{n.ljust(width)}  {first}".rstrip())
        return 0
    if not args.name:
        print(f"error: name a preset (available: {', '.join(available(Path(args.presets))) or 'none'}) or pass --list",
              file=sys.stderr)
        return 2
    try:
        r = apply(args.name, args.params, Path(args.presets))
    except (PresetError, ConfigError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not r["changes"] and r["new_text"] == r["old_text"]:
        print(f"{args.params} already has every value of preset {args.name}; nothing to write")
        return 0
    for key, old, new in r["changes"]:
        print(f"  {key}: {_value(old)} -> {_value(new)}")
    if args.check:
        sys.stdout.writelines(difflib.unified_diff(r["old_text"].splitlines(True), r["new_text"].splitlines(True),
                                                   args.params, f"{args.params} with preset {args.name}"))
        print(f"{len(r['changes'])} values would change; {r['source']} validates; nothing written (--check)")
        return 0
    tmp = Path(f"{args.params}.preset-tmp")
    tmp.write_text(r["new_text"])
    os.replace(tmp, args.params)
    note = "" if r["comments_kept"] else " (as plain YAML: the layout was not one the line editor knows, comments dropped)"
    print(f"{args.params}: preset {args.name} applied, {len(r['changes'])} values changed{note}; "
          f"`git diff {args.params}` shows the change, `git checkout {args.params}` goes back")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
