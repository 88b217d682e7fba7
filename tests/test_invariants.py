"""Source-level invariants: each fails when a second copy of something that has one home appears.

They read the source (ast and text), so they are fast and name the file and line at fault.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "matloop"
SOURCES = sorted(SRC.rglob("*.py"))


def _rel(path: Path) -> str:
    return path.relative_to(SRC).as_posix()


def _hits(pattern: str, allowed: set[str]) -> list[str]:
    regex = re.compile(pattern)
    out = []
    for path in SOURCES:
        if _rel(path) in allowed:
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            code = line.split("#", 1)[0]
            if regex.search(code):
                out.append(f"{_rel(path)}:{n}: {line.strip()}")
    return out


def test_sources_found():
    assert len(SOURCES) > 50 and (SRC / "utils" / "threads.py") in SOURCES


def test_torch_threads_set_only_by_the_thread_helpers():
    """Process-wide torch thread counts change only in utils/threads.py (contexts, CLI entry)."""
    assert _hits(r"\bset_num(_interop)?_threads\s*\(", {"utils/threads.py"}) == []


def _swallowing_handlers(tree: ast.AST) -> list[int]:
    """Lines of `except:` / `except Exception:` / `except BaseException:` whose body is `pass`."""
    broad = {"Exception", "BaseException"}
    out = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.ExceptHandler):
            continue
        names = node.type.elts if isinstance(node.type, ast.Tuple) else [node.type]
        is_broad = node.type is None or any(
            isinstance(n, ast.Name) and n.id in broad for n in names
        )
        if is_broad and all(isinstance(s, ast.Pass) for s in node.body):
            out.append(node.lineno)
    return out


def test_no_broad_exception_silently_passed():
    found = [
        f"{_rel(path)}:{line}"
        for path in SOURCES
        for line in _swallowing_handlers(ast.parse(path.read_text(encoding="utf-8")))
    ]
    assert found == []


def test_swallowing_check_can_fail():
    code = "try:\n    f()\nexcept Exception:\n    pass\n"
    code += "try:\n    g()\nexcept ValueError:\n    pass\n"
    assert _swallowing_handlers(ast.parse(code)) == [3]


def test_torch_load_never_unpickles_code():
    """One torch.load call (utils/safe_io.py, weights_only=True); nothing turns it off."""
    assert _hits(r"weights_only\s*=\s*False", set()) == []
    calls = [
        f"{_rel(path)}:{node.lineno}"
        for path in SOURCES
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "load"
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "torch"
    ]
    assert len(calls) == 1 and calls[0].startswith("utils/safe_io.py:")


def test_one_yaml_loader():
    # export/yace.py reads the .yace potential format (a data file, with a restricted loader)
    assert _hits(r"\byaml\.(safe_)?load\s*\(", {"utils/config.py", "export/yace.py"}) == []


def test_md_integrators_built_only_by_the_md_runner():
    assert _hits(r"\bfrom ase\.md\b|\bimport ase\.md\b", {"md/runner.py"}) == []


@pytest.mark.parametrize(
    "pattern, home",
    [
        (r"^def (_?jsonable|_to_jsonable|to_jsonable)\(", "utils/jsonable.py"),
        (r"^def (format_validation_error|load_yaml)\(", "utils/config.py"),
    ],
)
def test_one_definition(pattern, home):
    regex = re.compile(pattern, re.MULTILINE)
    homes = [_rel(p) for p in SOURCES if regex.search(p.read_text(encoding="utf-8"))]
    assert homes == [home]


def test_one_class_per_config_name():
    names: dict[str, list[str]] = {}
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and node.name.endswith("Config"):
                names.setdefault(node.name, []).append(_rel(path))
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Name):
                for target in node.targets:  # an alias such as `ModelConfig = Other`
                    if isinstance(target, ast.Name) and target.id.endswith("Config"):
                        names.setdefault(target.id, []).append(_rel(path))
    assert {k: v for k, v in names.items() if len(v) > 1} == {}


def test_ci_runs_format_check_parallel_tests_and_no_assertion_that_cannot_fail():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "ruff format --check" in ci and "-n " in ci
    assert not re.search(r"\bor True\b", ci)
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'select\s*=\s*\[[^\]]*"BLE"', pyproject)


def test_help_imports_no_torch():
    code = (
        "import sys\nfrom matloop.cli import main\nassert main(['--help']) == 0\n"
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False"


def test_validate_is_quick_by_default():
    """`matloop validate` runs a short NVE check unless a longer one is asked for (--nve-ps)."""
    from matloop.validation.config import ReportSettings

    settings = ReportSettings()
    assert settings.nve_ps / (settings.nve_timestep_fs * 1e-3) <= 2000  # MD steps
    assert ReportSettings(nve_ps=20.0).nve_ps == 20.0
