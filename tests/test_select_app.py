"""The selection panel on the Export page (ui/select_panel.py) and the chosen stars on the Diversity map, under
AppTest over a run the engine made through the stub server (its embeddings endpoint: no torch model loads)."""
from __future__ import annotations

import json

import pytest
import streamlit as st
from conftest import STUB_KEY, STUB_KEY_ENV, openai_backend_for
from streamlit.testing.v1 import AppTest

from evolab.app.support import Settings
from evolab.engine import pipeline
from evolab.schema import RunConfig
from evolab.seeds.files import load_example
from evolab.store import Store
from evolab.testing.stub_server import StubServer
from ui import common as app_common

APP = str(__import__("pathlib").Path(__file__).resolve().parent.parent / "app.py")


@pytest.fixture(scope="module")
def stub_module():
    with StubServer() as server:
        yield server


@pytest.fixture(scope="module")
def data(tmp_path_factory, stub_module):
    db = str(tmp_path_factory.mktemp("select_app") / "evolab.db")
    store = Store(db)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(STUB_KEY_ENV, STUB_KEY)
        cfg = RunConfig(model="gpt-4o-mini", base_url=stub_module.base_url, api_key_env=STUB_KEY_ENV, rounds=2)
        run_id = pipeline.create_run(store, load_example("general")[:6], cfg)
        assert pipeline.run_sync(store, run_id, backend=openai_backend_for(stub_module)) == "finished"
    yield store, run_id
    store.close()


@pytest.fixture(autouse=True)
def _app_env(monkeypatch, stub_module):
    from streamlit.runtime.pages_manager import PagesManager

    monkeypatch.setenv("EVOLAB_EMBED_BASE_URL", stub_module.base_url)
    monkeypatch.setenv("EVOLAB_EMBED_MODEL", "stub-embed")
    monkeypatch.setenv("EVOLAB_EMBED_KEY_ENV", STUB_KEY_ENV)
    init = PagesManager.__init__

    def init_v2(self, *args, **kwargs):  # the mode a server is in after its first run (see test_app.py)
        init(self, *args, **kwargs)
        PagesManager.uses_pages_directory = False

    monkeypatch.setattr(PagesManager, "__init__", init_v2)
    st.cache_resource.clear()
    yield
    st.cache_resource.clear()


def open_page(db: str, page: str, run_id: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["settings"] = Settings(db_path=db)
    at.query_params["run"] = run_id
    at.run()
    at.switch_page(f"pages/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert not [e.value for e in at.error if e.value.startswith(app_common.UNEXPECTED)]
    return at


def test_the_panel_chooses_records_and_the_map_stars_the_chosen(data):
    store, run_id = data
    at = open_page(store.path, "export", run_id)
    at.number_input(key="select_n").set_value(3)
    at.selectbox(key="select_cap_by").set_value("lineage")
    at.number_input(key="select_cap").set_value(1)
    [choose] = [b for b in at.button if b.label == "Choose"]
    choose.click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    [row] = store.selections(run_id)
    assert row["n_requested"] == 3 and 1 <= row["n_chosen"] <= 3 and row["params"]["cap_by"] == "lineage"
    tables = [d.value for d in at.dataframe if "taken" in getattr(d.value, "columns", [])]
    assert len(tables) == 3  # by round, operation, skill
    assert tables[0]["taken"].sum() == row["n_chosen"]
    assert tables[0]["candidates"].sum() == len(store.nodes(run_id, "kept"))
    spec = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    assert any("before and after" in s["layout"]["title"]["text"] for s in spec)

    at = open_page(store.path, "diversity", run_id)
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    [stars] = [t for t in spec["data"] if t["name"] == "chosen (selection)"]
    chosen = {i["node_id"] for i in store.selection_items(row["id"]) if i["chosen"]}
    assert set(stars["customdata"]) == chosen
