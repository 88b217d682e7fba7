"""The docs stay true: every `matloop …` command in them exists with the options it uses, and
every Python block compiles and imports only names matloop has."""

from __future__ import annotations

import ast
import importlib
import re
import shlex
from pathlib import Path

import pytest
import typer

from matloop.cli import app

ROOT = Path(__file__).resolve().parents[1]
DOCS = [
    ROOT / "README.md",
    ROOT / "benchmarks" / "README.md",
    *sorted((ROOT / "docs").glob("*.md")),
]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)


def _blocks(lang: set[str]):
    for path in DOCS:
        for kind, body in FENCE.findall(path.read_text()):
            if kind in lang:
                yield path.relative_to(ROOT), body


def _command_lines():
    """(doc, argv after `matloop`) of every shell line that runs matloop."""
    for doc, body in _blocks({"bash", "sh", "console", ""}):
        for line in body.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0].strip().removeprefix("$ ")
            if line.startswith("matloop "):
                yield doc, shlex.split(line.split("|")[0].split("&&")[0])[1:]


def _resolve(argv: list[str]):
    """The (click) command that `argv` names, and the option tokens it passes to it."""
    cmd = typer.main.get_command(app)
    rest = list(argv)
    while hasattr(cmd, "list_commands") and rest and not rest[0].startswith("-"):
        sub = cmd.get_command(cmd.context_class(cmd), rest[0])
        if sub is None:
            raise AssertionError(f"no command {rest[0]!r} under {cmd.name!r}")
        cmd, rest = sub, rest[1:]
    return cmd, [t.split("=")[0] for t in rest if t.startswith("--")]


def test_documented_commands_exist_with_their_options():
    commands = list(_command_lines())
    assert len(commands) >= 40  # the reader below still finds the docs' commands
    wrong = []
    for doc, argv in commands:
        try:
            cmd, options = _resolve(argv)
        except AssertionError as exc:
            wrong.append(f"{doc}: `matloop {' '.join(argv)}`: {exc}")
            continue
        known = {o for p in cmd.params for o in (*p.opts, *p.secondary_opts)} | {"--help"}
        unknown = [o for o in options if o not in known]
        if unknown:
            wrong.append(f"{doc}: `matloop {' '.join(argv)}` uses unknown {unknown}")
    assert not wrong, "\n".join(wrong)


def test_documented_benchmark_commands_use_flags_the_scripts_define():
    wrong, n = [], 0
    for doc, body in _blocks({"bash", "sh", "console", ""}):
        for line in body.replace("\\\n", " ").splitlines():
            found = re.search(r"python (benchmarks/\w+\.py)(.*)", line.split(" #")[0])
            if not found:
                continue
            n += 1
            script = ROOT / found.group(1)
            if not script.is_file():
                wrong.append(f"{doc}: no {found.group(1)}")
                continue
            flags = set(re.findall(r'"(--[\w-]+)"', script.read_text())) | {"--help"}
            args = shlex.split(re.split(r"[|>]|&&", found.group(2))[0])
            unknown = [t.split("=")[0] for t in args if t.startswith("--")]
            unknown = [t for t in unknown if t not in flags]
            if unknown:
                wrong.append(f"{doc}: {found.group(1)} has no {unknown}")
    assert n >= 40
    assert not wrong, "\n".join(wrong)


def _matloop_imports(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("matloop"):
            yield node.module, [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            yield from ((a.name, []) for a in node.names if a.name.startswith("matloop"))


def test_documented_python_compiles_and_imports_what_exists():
    blocks = list(_blocks({"python"}))
    assert len(blocks) >= 20
    wrong = []
    for doc, body in blocks:
        for module, names in _matloop_imports(ast.parse(body, filename=str(doc))):
            if not _is_module(module):
                wrong.append(f"{doc}: no module {module}")
                continue
            mod = importlib.import_module(module)
            missing = [n for n in names if not hasattr(mod, n) and not _is_module(f"{module}.{n}")]
            if missing:
                wrong.append(f"{doc}: {module} has no {missing}")
    assert not wrong, "\n".join(wrong)


def _is_module(name: str) -> bool:
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True


def test_the_check_can_fail():
    with pytest.raises(AssertionError, match="no command"):
        _resolve(["design", "sugest"])
    cmd, options = _resolve(["design", "suggest", "--objectiv", "x:max"])
    assert "--objectiv" not in {o for p in cmd.params for o in p.opts}
    assert options == ["--objectiv"]
