"""The layout's rules that import-linter (``make lint``, the contracts in pyproject.toml) does not check:

- the project's own imports sit at the top of a module; an import inside a function is only for a heavy module (a
  heavy library, or a module of ours that imports one at its top), so that listing and reporting stay fast;
- the commands that only read (``ls``, ``report``, ``summary``, ``compare``, ``claims``, ``references``) never import
  torch, and importing the catalog imports none of the heavy libraries.

Run: `.venv/bin/python -m pytest tests/test_layout.py -q` (about 20 s: each command runs in a fresh interpreter).
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("bench", "tasks", "methods")
# third-party libraries that cost seconds to import (ENVIRONMENT.md: transformers + peft + timm ~8 s, torch ~4.5 s)
HEAVY = frozenset(
    {
        "torch",
        "torchvision",
        "transformers",
        "peft",
        "timm",
        "bitsandbytes",
        "accelerate",
        "datasets",
        "safetensors",
        "gguf",
        "matplotlib",
        "pandas",
        "pyarrow",
        "scipy",
        "sklearn",
        "imagecorruptions",
        "PIL",
        "ray",
        "wandb",
        "rich",
        "psutil",
    }
)
BASELINES = ROOT / "results" / "baselines"


def _modules() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def _top_and_local_imports(path: Path) -> tuple[set[str], list[tuple[int, str]]]:
    """(modules imported at the module's top level, [(line, module)] imported inside a function or class). Imports
    under ``if TYPE_CHECKING:`` are for annotations only and count as neither."""
    tree = ast.parse(path.read_text(), str(path))
    top: set[str] = set()
    local: list[tuple[int, str]] = []

    def names(node: ast.AST) -> list[str]:
        if isinstance(node, ast.Import):
            return [a.name for a in node.names]
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            return [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        return []

    def visit(node: ast.AST, nested: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.Import | ast.ImportFrom):
                if nested:
                    local.extend((child.lineno, n) for n in names(child))
                else:
                    top.update(names(child))
            visit(child, nested or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef))

    visit(tree, False)
    return top, local


def _heavy_modules() -> set[str]:
    """Our modules that import a heavy library at their top, directly or through another of ours."""
    modules = _modules()
    tops = {name: _top_and_local_imports(path)[0] for name, path in modules.items()}
    heavy = {m for m, imported in tops.items() if any(i.split(".")[0] in HEAVY for i in imported)}
    grew = True
    while grew:
        grew = False
        for m, imported in tops.items():
            if m not in heavy and any(i in heavy for i in imported):
                heavy.add(m)
                grew = True
    return heavy


def test_the_projects_own_imports_are_at_the_top_unless_the_module_is_heavy():
    modules = _modules()
    heavy = _heavy_modules()
    wrong = []
    for path in modules.values():
        for line, imported in _top_and_local_imports(path)[1]:
            ours = imported.split(".")[0] in PACKAGES and imported in modules
            if ours and imported not in heavy:
                wrong.append(f"{path.relative_to(ROOT)}:{line} imports {imported} inside a function")
    assert not wrong, (
        "move these imports to the top of their modules (an import inside a function is for heavy modules only; "
        "a circle it would hide is caught by import-linter):\n" + "\n".join(wrong)
    )


def test_importing_the_cli_and_the_catalog_loads_no_heavy_module():
    """What ``adaptbench`` imports before any command runs (the cli, and through it the catalog with every plugin,
    the suite, the report, the analysis and the grid) imports no heavy library at any module's top: a heavy module
    (a plugin's torch layers, the training loop) is imported by the function that needs it."""
    modules = _modules()
    heavy = _heavy_modules()
    tops = {name: _top_and_local_imports(path)[0] for name, path in modules.items()}
    seen, todo = set(), ["bench.cli", "bench.catalog"]
    while todo:
        m = todo.pop()
        if m in seen or m not in modules:
            continue
        seen.add(m)
        todo += [i for i in tops[m] if i in modules]
        todo += [p for p in (m.rpartition(".")[0],) if p]  # a module's package is imported first
        if m in ("methods", "tasks"):  # a plugin package imports its modules (not "_" helpers) by discovery
            todo += [i for i in modules if i.rpartition(".")[0] == m and not i.rpartition(".")[2].startswith("_")]
    assert "methods" in seen and "tasks" in seen and "bench.backbones" in seen
    assert not sorted(seen & heavy), "imported at start-up, and heavy"


def _imported_by(argv: list[str]) -> dict[str, bool]:
    code = (
        "import json, sys\n"
        "from bench.cli import main\n"
        f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
        "print(json.dumps({m: m in sys.modules for m in ('torch', 'transformers', 'peft', 'timm')}), file=sys.stderr)"
    )
    env = {**os.environ, "ADAPTBENCH_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    return json.loads(done.stderr.strip().splitlines()[-1])


READ_ONLY = {
    "ls": ["ls"],
    "summary": ["summary", "--results", str(BASELINES / "proxy-cpu"), "--suite", "proxy"],
    "compare": ["compare", "--baseline", str(BASELINES / "proxy-cpu"), "--candidate", str(BASELINES / "proxy-cpu")],
    "claims": ["claims", "--results", str(BASELINES / "default-3seed-cpu"), "--suite", "default"],
    "references": ["references", "--results", str(BASELINES / "anchors-cpu")],
}


@pytest.mark.parametrize("command", sorted(READ_ONLY))
def test_a_command_that_only_reads_records_never_imports_torch(command):
    loaded = _imported_by(READ_ONLY[command])
    assert not any(loaded.values()), f"adaptbench {command} imported {[m for m, on in loaded.items() if on]}"


def test_the_report_never_imports_torch(tmp_path):
    argv = ["report", "--results", str(BASELINES / "anchors-cpu"), "--suite", "anchors", "--out", str(tmp_path)]
    loaded = _imported_by(argv)
    assert (tmp_path / "index.html").exists()
    assert not any(loaded.values()), f"adaptbench report imported {[m for m, on in loaded.items() if on]}"
