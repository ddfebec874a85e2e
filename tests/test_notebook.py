import json
from pathlib import Path

import nbformat
import pytest
from analysis_fixtures import build_run
from nbclient import NotebookClient

from evolab.store import Store
from evolab.testing.stub_server import StubServer

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "analysis.ipynb"
PLOTLY_MIME = "application/vnd.plotly.v1+json"


def test_notebook_is_valid_json():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.get("outputs") for c in code)  # stored without outputs


def test_notebook_executes_on_a_small_run(tmp_path, monkeypatch):
    db = tmp_path / "evolab.db"
    store = Store(db)
    build_run(store, rounds=1, name="older")
    latest = build_run(store, rounds=2, name="latest")
    store.close()
    with StubServer() as stub:  # embeddings from the stub: the notebook's path, without loading torch
        monkeypatch.setenv("EVOLAB_DB", str(db))
        monkeypatch.delenv("EVOLAB_RUN", raising=False)
        monkeypatch.setenv("EVOLAB_EMBED_BASE_URL", stub.base_url)
        monkeypatch.setenv("EVOLAB_EMBED_MODEL", "stub-embed")
        monkeypatch.setenv("PYTHONPATH", str(ROOT))
        nb = nbformat.read(NOTEBOOK, as_version=4)
        client = NotebookClient(nb, timeout=300, kernel_name="python3",
                                resources={"metadata": {"path": str(NOTEBOOK.parent)}})
        client.execute()
        assert any(r["path"].endswith("/embeddings") for r in stub.requests)
    texts = [o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert any(f"run {latest.run_id}" in t for t in texts)  # the latest run by default
    assert not [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    figures = [o["data"][PLOTLY_MIME] for c in nb.cells if c.cell_type == "code" for o in c.outputs
               if o.output_type in ("execute_result", "display_data") and PLOTLY_MIME in o.get("data", {})]
    assert len(figures) >= 8
    lineage = figures[0]
    ids = [i for t in lineage["data"] if t.get("mode") == "markers" and t.get("customdata")
           for i in t["customdata"]]
    assert sorted(ids) == sorted(n.id for n in latest.nodes)
    dump = json.dumps(figures, ensure_ascii=False)
    assert "서울의 대중교통" in dump


@pytest.mark.parametrize("missing", ["db", "run"])
def test_notebook_says_what_to_do_without_a_run(tmp_path, monkeypatch, missing):
    db = tmp_path / "evolab.db"
    if missing == "run":
        Store(db).close()
    monkeypatch.setenv("EVOLAB_DB", str(db))
    monkeypatch.delenv("EVOLAB_RUN", raising=False)
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nb.cells = nb.cells[:2]
    client = NotebookClient(nb, timeout=120, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOK.parent)}})
    from nbclient.exceptions import CellExecutionError

    with pytest.raises(CellExecutionError, match="set EVOLAB_DB" if missing == "db" else "holds no run yet"):
        client.execute()
