"""The public API in evolab/__init__.py: every name resolves and says what it does, `import evolab` stays light,
a script that uses only `evolab.<name>` runs end to end on the fake backend, and the notebook uses nothing else."""
from __future__ import annotations

import ast
import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest
from analysis_fixtures import HashEmbedder

import evolab
from evolab.llm import FakeBackend

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "analysis.ipynb"
HEAVY = ("pandas", "numpy", "plotly", "torch", "sentence_transformers", "umap", "sklearn", "scipy", "asyncio")


def test_every_public_name_resolves_with_a_docstring():
    assert len(evolab.__all__) == len(set(evolab.__all__))
    for name in evolab.__all__:
        obj = getattr(evolab, name)
        doc = (obj.__doc__ or "").strip()
        assert doc and doc.splitlines()[0].strip(), f"evolab.{name} has no docstring"
        assert name in dir(evolab)
    # the lazy names are the same objects as in their modules, which type checkers see through TYPE_CHECKING
    from evolab.analysis import frames, viz
    assert evolab.nodes_frame is frames.nodes_frame and evolab.drift_figure is viz.drift_figure
    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        evolab.no_such_name  # noqa: B018


def test_type_checking_imports_match_the_lazy_names():
    """Each lazy name is imported under `if TYPE_CHECKING:` from the module `__getattr__` loads it from."""
    tree = ast.parse(Path(evolab.__file__).read_text(encoding="utf-8"))
    block = next(n for n in tree.body if isinstance(n, ast.If) and getattr(n.test, "id", "") == "TYPE_CHECKING")
    seen = {a.name: n.module for n in block.body if isinstance(n, ast.ImportFrom) for a in n.names}
    assert {name: seen.get(name) for name in evolab._LAZY} == evolab._LAZY
    defined = {n.name for n in tree.body if isinstance(n, ast.FunctionDef) and not n.name.startswith("_")}
    assert set(evolab.__all__) == set(evolab._LAZY) | defined


def test_import_evolab_is_light():
    code = ("import sys, evolab, evolab.schema; "
            f"print([m for m in {HEAVY!r} if m in sys.modules]); print(len(evolab.__all__))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}).stdout.splitlines()
    assert out == ["[]", str(len(evolab.__all__))]


def script(tmp_path: Path, backend) -> dict:
    """What a script does with the public API only."""
    store = evolab.open_store(tmp_path / "runs" / "evolab.db")
    try:
        seeds = evolab.load_example("general")[:3] + [evolab.Seed("Explain what a hash table is.")]
        run_id = evolab.create_run(store, seeds, rounds=2, model="fake", base_url="http://fake.invalid/v1",
                                   concurrency=4, name="api")
        status = evolab.run(store, run_id, backend=backend)
        nodes = evolab.nodes_frame(store, run_id)
        drift = evolab.round_operation_frame(nodes, include_all=True)
        figure = evolab.drift_figure(drift, "difficulty")
        cost = evolab.cost_frame(evolab.calls_frame(store, run_id, nodes))
        out = tmp_path / "kept.jsonl"
        exported = evolab.write_export(store, run_id, "lineage", out)
        return {"run_id": run_id, "status": status, "nodes": nodes, "figure": figure, "cost": cost,
                "exported": exported, "lines": out.read_text(encoding="utf-8").splitlines(),
                "overview": evolab.run_overview(store, run_id)}
    finally:
        store.close()


def test_a_script_runs_exports_and_draws_with_the_public_api_only(tmp_path):
    got = script(tmp_path, FakeBackend())
    assert got["status"] == "finished"
    nodes = got["nodes"]
    assert sorted(nodes["round"].unique()) == [0, 1, 2] and (nodes["status"] == "seed").sum() == 4
    assert got["overview"]["seeds"] == 4 and got["overview"]["calls"] > 0
    assert type(got["figure"]).__name__ == "Figure" and len(got["figure"].data) > 0
    assert not got["cost"].empty
    assert got["exported"] == len(got["lines"]) > 4
    assert {json.loads(line)["run_id"] for line in got["lines"]} == {got["run_id"]}


def test_run_works_inside_a_running_event_loop(tmp_path):
    """A Jupyter cell runs inside an event loop: `evolab.run` must not call asyncio.run() there."""
    async def cell():
        return script(tmp_path, FakeBackend())

    assert asyncio.run(cell())["status"] == "finished"


def test_resume_goes_on_from_the_latest_run_and_raises_its_budget(tmp_path):
    store = evolab.open_store(tmp_path / "evolab.db")
    try:
        with pytest.raises(LookupError, match="holds no run yet"):
            evolab.resume(store)
        with pytest.raises(TypeError, match="no field 'roundz'"):
            evolab.create_run(store, [evolab.Seed("Name three rivers.")], roundz=2)
        config = evolab.RunConfig(model="fake", base_url="http://fake.invalid/v1", rounds=2, price=[0.5, 1.5])
        run_id = evolab.create_run(store, [evolab.Seed("Name three rivers.")], config, name="resumed")
        backend = FakeBackend()
        assert evolab.run(store, run_id, backend=backend, until_round=1) == "paused"
        calls = len(backend.requests)
        assert evolab.resume(store, budget_usd=5.0, backend=backend) == "finished"
        assert store.get_run(run_id)["config"].budget_usd == 5.0
        assert len(backend.requests) > calls
        assert set(evolab.nodes_frame(store, run_id)["round"]) == {0, 1, 2}
        html = evolab.write_report(store, run_id, tmp_path / "report.html", embedder=HashEmbedder())
        assert html.exists() and "resumed" in html.read_text(encoding="utf-8")
    finally:
        store.close()


def test_the_notebook_uses_only_the_public_api():
    nb = json.loads(NOTEBOOK.read_text(encoding="utf-8"))
    used, imports = set(), []
    for cell in nb["cells"]:
        if cell["cell_type"] != "code":
            continue
        tree = ast.parse("".join(cell["source"]))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("evolab"):
                imports.append(f"from {node.module} import ...")
            elif isinstance(node, ast.Import):
                imports += [a.name for a in node.names if a.name.startswith("evolab.")]
            elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "evolab":
                used.add(node.attr)
    assert not imports, f"the notebook imports evolab's modules, not the public API: {imports}"
    assert used and used <= set(evolab.__all__), sorted(used - set(evolab.__all__))
