"""No module under evolab/ imports streamlit (DESIGN.md: everything the app does is callable from notebooks,
the CLI and tests): every module, found by walking the package, not a list that new modules escape."""
from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

import evolab

PACKAGE = Path(evolab.__file__).parent


def evolab_modules() -> list[str]:
    return sorted(m.name for m in pkgutil.walk_packages([str(PACKAGE)], prefix="evolab."))


def test_the_walk_finds_the_modules_we_know():
    found = evolab_modules()
    assert {"evolab.engine.pipeline", "evolab.analysis.viz", "evolab.llm.client", "evolab.testing.stub_server"} <= set(found)
    files = {".".join(("evolab",) + p.relative_to(PACKAGE).with_suffix("").parts).removesuffix(".__init__")
             for p in PACKAGE.rglob("*.py")}
    assert files - {"evolab"} == set(found)  # every .py file is a module the walk sees


def test_no_module_source_imports_streamlit():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{path.relative_to(PACKAGE)}: {n}" for n in names if n.split(".")[0] == "streamlit"]
    assert not offenders


def test_importing_every_module_does_not_load_streamlit():
    code = ("import importlib, sys\n"
            f"for name in {[m for m in evolab_modules() if m != 'evolab.__main__']!r}:  # __main__ runs the CLI\n"
            "    importlib.import_module(name)\n"
            "print('\\n'.join(m for m in sys.modules if m.split('.')[0] == 'streamlit'))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == ""
