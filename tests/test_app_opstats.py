"""The Drift page's operations section (a plain run and an adaptive one, with its weights figure) and the Runs
page's adaptive option, in AppTest."""
from __future__ import annotations

import json

import pytest
from conftest import STUB_KEY, STUB_KEY_ENV, openai_backend_for
from test_app import (  # noqa: F401
    _app_env,
    _fresh_resources,
    _navigation_mode,
    button,
    clean,
    open_page,
    stub_module,
    stub_settings,
    texts,
    wait_for_worker,
)

from evolab.engine import pipeline
from evolab.engine.operations import operation_names
from evolab.schema import RunConfig, Seed
from evolab.store import Store
from evolab.testing.op_rates_stub import OperationRates
from evolab.testing.stub_server import StubServer

SEEDS = [Seed(f"Explain idea number {i} of basic physics in plain words.") for i in range(4)] + [
    Seed("바다에 대한 짧은 시를 쓰세요.", skill="writing")]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One uniform and one adaptive 2-round run on the hidden-rates stub (English and Korean seeds)."""
    db = str(tmp_path_factory.mktemp("ops") / "ops.db")
    store = Store(db)
    rates = {op: (0.9 if op == "constraints" else 0.2) for op in operation_names()}
    ids = {}
    with pytest.MonkeyPatch.context() as mp, StubServer(handler=OperationRates(rates)) as stub:
        mp.setenv(STUB_KEY_ENV, STUB_KEY)
        for mode in ("weights", "adaptive"):
            cfg = RunConfig(model="gpt-4o-mini", base_url=stub.base_url, api_key_env=STUB_KEY_ENV, rounds=2,
                            operation_sampling=mode, name=mode)
            ids[mode] = pipeline.create_run(store, SEEDS, cfg, name=mode)
            assert pipeline.run_sync(store, ids[mode], backend=openai_backend_for(stub)) == "finished"
    yield db, store, ids
    store.close()


def chart_titles(at) -> list[str]:
    return [json.loads(c.proto.spec)["layout"].get("title", {}).get("text", "") for c in at.get("plotly_chart")]


def spec(at, key_part: str) -> dict:
    found = [json.loads(c.proto.spec) for c in at.get("plotly_chart") if key_part in c.proto.id]
    assert found, key_part
    return found[0]


def test_drift_shows_what_each_operation_did(runs):
    db, store, ids = runs
    at = open_page(db, "drift", query={"run": ids["weights"]})
    assert "What each operation did" in texts(at)
    ops_fig = spec(at, "drift_ops")
    assert {t["name"] for t in ops_fig["data"]} <= set(operation_names())
    table = next(d.value for d in at.dataframe if "kept %" in getattr(d.value, "columns", []))
    children = [n for n in store.nodes(ids["weights"]) if n.round > 0]
    assert table["tried"].sum() == len(children)
    assert table["kept"].sum() == sum(n.status == "kept" for n in children)
    assert "Adaptive operation weights" not in texts(at)  # a uniform run has no weights to show
    at.radio(key="drift_ops_split").set_value("language").run()
    clean(at)
    table = next(d.value for d in at.dataframe if "kept %" in getattr(d.value, "columns", []))
    assert set(table["language"]) == {"en", "ko"}
    at.radio(key="drift_ops_split").set_value("none").run()
    clean(at)


def test_drift_shows_the_weights_of_an_adaptive_run(runs):
    db, store, ids = runs
    at = open_page(db, "drift", query={"run": ids["adaptive"]})
    shown = texts(at)
    assert "Adaptive operation weights" in shown and "kept and harder than its parent" in shown
    weights = spec(at, "drift_op_weights")
    decisions = store.op_decisions(ids["adaptive"])
    lines = [t for t in weights["data"] if t.get("mode") == "lines"]
    assert {t["name"] for t in lines} == set(operation_names())
    assert [a["text"] for a in weights["layout"]["annotations"]] == ["en", "ko"]  # one panel per language
    assert len(weights["data"]) == 2 * 2 * len(operation_names())  # a line and the chosen dots per operation and language
    assert {d["language"] for d in decisions} == {"en", "ko"}


def test_runs_page_starts_an_adaptive_run(tmp_path, monkeypatch, stub_module):
    db = str(tmp_path / "adaptive.db")
    monkeypatch.setenv("EVOLAB_DB", db)
    at = open_page(db, "runs", settings=stub_settings(db, stub_module))
    at.selectbox(key="run_source").set_value(("example", "general")).run()
    at.number_input(key="run_limit").set_value(2).run()
    at.number_input(key="run_rounds").set_value(1).run()
    at.toggle(key="run_adaptive_ops").set_value(True).run()
    assert "the weights' values are not used" in texts(at)
    button(at, "Start run").click().run()
    clean(at)
    store = Store(db)
    run_id = store.list_runs()[0]["id"]
    wait_for_worker(run_id)
    assert store.get_run(run_id)["config"].operation_sampling == "adaptive"
    decisions = store.op_decisions(run_id)
    assert len(decisions) == sum(1 for n in store.nodes(run_id) if n.round > 0) == 2
    store.close()
