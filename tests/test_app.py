"""The Streamlit workbench under AppTest: every page over a store the engine filled through the stub
server, asserting what a user sees (titles, metrics, tables, errors) and that nothing raises.

AppTest cannot click plotly points: the selection logic is tested as a plain function
(`app_support.selected_node_id`). Embeddings come from the stub's /v1/embeddings endpoint
(EVOLAB_EMBED_BASE_URL), so no torch model loads here; the browser test uses the real one.
"""
from __future__ import annotations

import hashlib
import json
import random
import re
import sqlite3
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import streamlit as st
from conftest import STUB_KEY, STUB_KEY_ENV, openai_backend_for
from streamlit.testing.v1 import AppTest

from evolab.app import share
from evolab.app import support as app_support
from evolab.app import worker
from evolab.app.support import Settings
from evolab.engine import pipeline
from evolab.llm.fake import scripted_reply
from evolab.llm.local import NOTICE
from evolab.schema import KEPT, PENDING, Node, RunConfig, Score, Seed
from evolab.seeds.files import load_example
from evolab.store import Store
from evolab.testing.stub_server import StubServer
from evolab.text import markup
from ui import common as app_common

APP = str(Path(__file__).resolve().parents[1] / "app.py")
MODEL = "gpt-4o-mini"
PAGES = ["seeds", "evolve", "runs", "lineage", "drift", "diversity", "compare", "export"]


def refusing_reply(messages, purpose):
    """The scripted model, but it refuses to answer some instructions (so runs have eliminations)."""
    text = messages[-1]["content"]
    if purpose == "respond" and int(hashlib.sha256(text.encode()).hexdigest(), 16) % 3 == 0:
        return "Sorry, I cannot help with that."
    return scripted_reply(messages, purpose)


@pytest.fixture(scope="module")
def stub_module():
    with StubServer(handler=refusing_reply) as server:
        yield server


@pytest.fixture(scope="module")
def data(tmp_path_factory, stub_module):
    """A store with a finished 2-round batch run (Korean and English seeds) and a step-through session."""
    db = str(tmp_path_factory.mktemp("app") / "evolab.db")
    store = Store(db)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(STUB_KEY_ENV, STUB_KEY)
        seeds = load_example("finance")[:2] + load_example("general")[:2]
        cfg = RunConfig(model=MODEL, base_url=stub_module.base_url, api_key_env=STUB_KEY_ENV, rounds=2,
                        name="stub-batch")
        batch = pipeline.create_run(store, seeds, cfg, name="stub-batch")
        assert pipeline.run_sync(store, batch, backend=openai_backend_for(stub_module)) == "finished"
        session, roots = pipeline.start_interactive(store, seeds[:2], cfg, name="steps")
        first = pipeline.step_sync(store, session, roots[0].id, "deepen", backend=openai_backend_for(stub_module))
        second = pipeline.step_sync(store, session, first.node.id, backend=openai_backend_for(stub_module))
    yield SimpleNamespace(db=db, store=store, batch=batch, session=session, roots=roots, first=first.node,
                          second=second.node, stub=stub_module)
    store.close()


@pytest.fixture(autouse=True)
def _app_env(monkeypatch, stub_module):
    monkeypatch.setenv("EVOLAB_APP_WARMUP", "0")
    monkeypatch.setenv("EVOLAB_EMBED_BASE_URL", stub_module.base_url)
    monkeypatch.setenv("EVOLAB_EMBED_MODEL", "stub-embed")
    monkeypatch.setenv("EVOLAB_EMBED_KEY_ENV", STUB_KEY_ENV)
    yield


@pytest.fixture(autouse=True)
def _navigation_mode(monkeypatch):
    """AppTest starts *every* run in Streamlit's old `pages/` folder mode, which runs the current page
    file without app.py (a real server does that only for its first run, and app_common.ensure_frame
    reruns it through app.py; under AppTest that rerun would swallow every click). Start in the mode a
    server is in after its first run."""
    from streamlit.runtime.pages_manager import PagesManager

    init = PagesManager.__init__

    def init_v2(self, *args, **kwargs):
        init(self, *args, **kwargs)
        PagesManager.uses_pages_directory = False

    monkeypatch.setattr(PagesManager, "__init__", init_v2)


@pytest.fixture(scope="module", autouse=True)
def _fresh_resources():
    st.cache_resource.clear()  # the store and embedder are cached per process
    yield
    st.cache_resource.clear()


def stub_settings(db: str, stub: StubServer) -> Settings:
    return Settings(db_path=db, base_url=stub.base_url, model=MODEL, api_key_env=STUB_KEY_ENV)


def open_page(db: str, page: str | None = None, *, settings: Settings | None = None, query: dict | None = None,
              timeout: float = 60) -> AppTest:
    """The app on `db`, switched to `page`, run once."""
    at = AppTest.from_file(APP, default_timeout=timeout)
    at.session_state["settings"] = settings or Settings(db_path=db)
    for k, v in (query or {}).items():
        at.query_params[k] = v
    at.run()
    if page and page != "seeds":
        at.switch_page(f"pages/{page}.py").run()
    return clean(at)


def clean(at: AppTest) -> AppTest:
    """No exception and no "unexpected problem" (app.py turns a page's exception into that message)."""
    assert not at.exception, [e.value for e in at.exception]
    unexpected = [e.value for e in at.error if e.value.startswith(app_common.UNEXPECTED)]
    assert not unexpected, unexpected
    return at


def texts(at: AppTest) -> str:
    """Every text a user can read on the page (markdown, captions, alerts, titles, metrics, buttons), with the
    backslash escapes that keep model and user text literal (`app_common.md`) resolved, as a reader sees them."""
    parts = []
    for group in (at.title, at.header, at.subheader, at.markdown, at.caption, at.info, at.warning, at.error,
                  at.success):
        parts += [str(e.value) for e in group]
    parts += [f"{m.label} {m.value}" for m in at.metric]
    parts += [b.label for b in at.button]
    text = read_markdown("\n".join(parts))
    return "\n".join([text] + [str(e.value) for e in at.text] + [str(c.value) for c in at.code])  # not Markdown


def read_markdown(source: str) -> str:
    """A Markdown source as its text reads: `\\*` is `*` (the escapes `app_common.md` adds), the word joiner gone."""
    return re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", source).replace(markup.WORD_JOINER, "")


def metric(at: AppTest, label: str) -> str:
    found = [m.value for m in at.metric if m.label == label]
    assert found, f"no metric {label!r} among {[m.label for m in at.metric]}"
    return found[0]


def button(at: AppTest, label: str):
    found = [b for b in at.button if b.label == label]
    assert found, f"no button {label!r} among {[b.label for b in at.button]}"
    return found[0]


def wait_for_worker(run_id: str, timeout: float = 60) -> None:
    job = worker.wait(run_id, timeout)
    assert job is not None and not job.alive, "the worker did not finish in time"
    assert job.error is None, job.error


# -- the frame ----------------------------------------------------------------------------------------
def test_first_open_on_an_empty_store_says_what_to_do(tmp_path, monkeypatch):
    db = str(tmp_path / "empty.db")
    monkeypatch.setenv("EVOLAB_DB", db)
    at = AppTest.from_file(APP, default_timeout=60).run()
    clean(at)
    assert at.title[0].value == "Seeds"
    assert "No seeds loaded yet: upload a file, or load an example set above." in texts(at)
    sidebar = "\n".join(str(e.value) for e in at.sidebar.info)
    assert NOTICE in sidebar  # the embedded model is for trying the workflow: said plainly
    assert any(db in str(c.value) for c in at.sidebar.caption)  # the store path from EVOLAB_DB
    hints = {"evolve": "No step-through session yet", "runs": "No batch run yet",
             "lineage": "Load seeds on the Seeds page", "drift": "start a run on the Runs page",
             "diversity": "start a run on the Runs page", "compare": "start a run on the Runs page",
             "export": "start a run on the Runs page"}
    for page in PAGES[1:]:
        at.switch_page(f"pages/{page}.py").run()
        clean(at)
        assert hints[page] in "\n".join(i.value for i in at.main.info), page


def test_sidebar_settings_are_checked_and_never_hold_a_key(tmp_path, monkeypatch):
    monkeypatch.setenv("EVOLAB_DB", str(tmp_path / "s.db"))
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.sidebar.text_input(key="set_url").set_value("api.example.com/v1")
    at.sidebar.text_input(key="set_key_env").set_value("sk-live-123 456")
    button(at, "Use these settings").click().run()
    errors = read_markdown("\n".join(e.value for e in at.sidebar.error))
    assert "must start with http:// or https://" in errors
    assert "not a variable name" in errors and "never the key itself" in errors
    assert at.session_state["settings"].base_url == ""  # nothing taken over

    at.sidebar.text_input(key="set_url").set_value("https://api.example.com/v1")
    at.sidebar.text_input(key="set_model").set_value("some-model")
    at.sidebar.text_input(key="set_key_env").set_value(STUB_KEY_ENV)
    button(at, "Use these settings").click().run()
    assert not at.sidebar.error
    s = at.session_state["settings"]
    assert (s.base_url, s.model, s.api_key_env) == ("https://api.example.com/v1", "some-model", STUB_KEY_ENV)
    assert f"{STUB_KEY_ENV} is set" in read_markdown("\n".join(c.value for c in at.sidebar.caption))
    cfg = s.run_config(rounds=2)
    assert cfg.api_key_env == STUB_KEY_ENV and STUB_KEY not in json.dumps(cfg.to_dict())

    # A reload (a new session) starts from the settings the store remembers; the key never reaches it.
    at = AppTest.from_file(APP, default_timeout=60).run()
    s = at.session_state["settings"]
    assert (s.base_url, s.model, s.api_key_env) == ("https://api.example.com/v1", "some-model", STUB_KEY_ENV)
    assert at.sidebar.text_input(key="set_url").value == "https://api.example.com/v1"
    assert STUB_KEY.encode() not in (tmp_path / "s.db").read_bytes()


def test_a_failing_page_shows_words_not_a_traceback(data, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("disk I/O error")

    monkeypatch.setattr(app_support, "progress_info", broken)
    at = AppTest.from_file(APP, default_timeout=60)
    at.session_state["settings"] = Settings(db_path=data.db)
    at.run()
    at.switch_page("pages/runs.py").run()
    assert not at.exception
    message = read_markdown(at.error[0].value)
    assert message.startswith(app_common.UNEXPECTED) and "disk I/O error" in message
    assert "Reload the page" in message and "Traceback" not in message


def test_form_values_survive_a_visit_to_another_page(data):
    at = open_page(data.db, "runs", query={"run": data.batch})
    at.number_input(key="run_rounds").set_value(2).run()
    at.selectbox(key="run_source").set_value(("example", "finance")).run()
    at.switch_page("pages/drift.py").run()
    at.switch_page("pages/runs.py").run()
    clean(at)
    assert at.number_input(key="run_rounds").value == 2
    assert at.selectbox(key="run_source").value == ("example", "finance")


# -- seeds ----------------------------------------------------------------------------------------------
def test_seeds_example_counts_and_save(tmp_path, monkeypatch):
    db = str(tmp_path / "seeds.db")
    monkeypatch.setenv("EVOLAB_DB", db)
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.selectbox(key="seed_example").set_value("finance").run()
    button(at, "Load example").click().run()
    clean(at)
    assert metric(at, "Seeds") == "44"
    assert set(metric(at, "Languages").split(", ")) == {"ko", "en"}
    tables = [d.value for d in at.dataframe]
    assert any("tax" in set(t.get("skill", [])) for t in tables if isinstance(t, pd.DataFrame))
    assert at.data_editor[0].value.shape[0] == 44  # the editable table
    assert "사회초년생" in at.data_editor[0].value["instruction"].iloc[0]
    at.text_input(key="seed_set_name").set_value("finance-v1")
    button(at, "Save seed set").click().run()
    assert "Saved 44 seeds as 'finance-v1'" in texts(at)
    store = Store(db)
    assert store.seed_sets() == ["finance-v1"] and len(store.load_seed_set("finance-v1")) == 44
    store.close()


def test_seed_table_edits_survive_a_visit_to_another_page(tmp_path, monkeypatch):
    monkeypatch.setenv("EVOLAB_DB", str(tmp_path / "edits.db"))
    at = AppTest.from_file(APP, default_timeout=60).run()
    button(at, "Load example").click().run()
    n = len(load_example("general"))
    key = at.data_editor[0].key
    at.session_state[key] = {"edited_rows": {0: {"skill": "budgeting"}}, "added_rows": [], "deleted_rows": [1]}
    at.run()
    assert metric(at, "Seeds") == str(n - 1)
    at.switch_page("pages/runs.py").run()
    assert at.selectbox(key="run_source").value == ("table", "")
    assert f"The table on the Seeds page ({n - 1} seeds, not saved)" in at.selectbox(key="run_source").options
    at.switch_page("pages/seeds.py").run()
    clean(at)
    assert metric(at, "Seeds") == str(n - 1)
    table = at.data_editor[0].value
    assert len(table) == n - 1 and table["skill"].iloc[0] == "budgeting"


def test_seed_upload_shows_the_loader_error_and_accepts_a_good_file(tmp_path, monkeypatch):
    monkeypatch.setenv("EVOLAB_DB", str(tmp_path / "up.db"))
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.file_uploader[0].upload("bad.jsonl", b'{"instruction": "ok"}\n{"instruction": \n', "application/jsonl").run()
    clean(at)
    assert at.error and "bad.jsonl, line 2" in read_markdown(at.error[0].value) and "upload it again" in at.error[0].value
    at = AppTest.from_file(APP, default_timeout=60).run()
    csv = "Instruction,Skill,Difficulty\n요약해 주세요,writing,2\nExplain compound interest,finance,3\n".encode()
    at.file_uploader[0].upload("seeds.csv", csv, "text/csv").run()
    clean(at)
    assert not at.error
    assert metric(at, "Seeds") == "2"


def test_seed_table_rows_are_validated_like_a_file():
    from evolab.seeds.files import SeedFileError, seeds_from_records

    table = pd.DataFrame({"instruction": ["Explain VAT.", "", "요약해 주세요"], "input": ["", "", ""],
                          "skill": ["tax", None, "writing"], "difficulty": [2, None, "hard"]})
    with pytest.raises(SeedFileError, match="table, row 3"):
        seeds_from_records(table)
    table.loc[2, "difficulty"] = 3
    seeds = seeds_from_records(table)  # the empty new row is dropped
    assert [s.instruction for s in seeds] == ["Explain VAT.", "요약해 주세요"]
    counts = app_support.seed_counts(seeds)
    assert counts["count"] == 2 and set(counts["language"]["language"]) == {"en", "ko"}


# -- step through -----------------------------------------------------------------------------------------
def test_step_through_shows_everything_a_step_did_and_survives_a_reload(tmp_path, monkeypatch, stub):
    db = str(tmp_path / "steps.db")
    monkeypatch.setenv("EVOLAB_DB", db)
    settings = stub_settings(db, stub)
    at = open_page(db, "evolve", settings=settings)
    assert "No step-through session yet" in texts(at)
    at.selectbox(key="evolve_source").set_value(("example", "general")).run()
    button(at, "Start a session").click().run()
    clean(at)
    store = Store(db)
    run_id = store.list_runs()[0]["id"]
    assert store.get_run(run_id)["status"] == "interactive"
    at.selectbox(key="evolve_op").set_value("constraints").run()
    button(at, "Evolve").click().run()
    clean(at)
    assert not at.error, [e.value for e in at.error]
    child = [n for n in store.nodes(run_id) if n.round == 1][0]
    shown = texts(at)
    assert "The step's result" in shown and child.operation == "constraints"
    codes = [c.value.strip() for c in at.code]
    assert child.prompt.strip() in codes and child.raw_output.strip() in codes  # exact prompt, raw output
    assert child.instruction in [t.value for t in at.text]  # the parsed instruction
    verdicts = [t.value for t in at.table if "verdict" in getattr(t.value, "columns", [])][0].map(read_markdown)
    assert child.status == KEPT
    # one row per rule: the cheap check and the equality judge are two stages of no_new_information's row
    assert sorted(verdicts["rule"]) == sorted({"truncated", "no_new_information", "prompt_leak", "refusal",
                                               "empty_response", "language_drift", "off_topic"})
    assert (verdicts["verdict"] == "✓\u00a0passed").all()
    assert "cheap check ✓" in verdicts.set_index("rule").loc["no_new_information", "found"]
    assert re.search(r"difficulty \*\*[\d.]+\*\* · quality \*\*", shown)
    assert at.query_params["node"] == [child.id] or at.query_params["node"] == child.id

    # continue from the child: the second step is round 2
    button(at, "Evolve").click().run()
    grandchild = [n for n in store.nodes(run_id) if n.round == 2][0]
    assert grandchild.parent_id == child.id
    assert at.selectbox(key="evolve_node").value == grandchild.id
    # a tree that grew: three nodes of this seed
    assert "3 node(s) in this tree" in texts(at)

    # discard by hand, then keep again
    assert "a run never evolves it further" not in texts(at)  # a kept node: no word before evolving it
    button(at, "Discard").click().run()
    assert store.get_node(grandchild.id).status == "eliminated" and store.get_node(grandchild.id).rule == "manual"
    # an eliminated node: a word before evolving it further (it is where the selector lands after a step)
    assert "This node was eliminated by `manual`: a run never evolves it further" in texts(at)
    button(at, "Keep").click().run()
    assert store.get_node(grandchild.id).status == KEPT

    # a reload (a new session with the URL's query parameters) returns to the same node
    again = open_page(db, "evolve", settings=settings, query={"run": run_id, "node": child.id})
    assert again.selectbox(key="evolve_node").value == child.id
    assert child.instruction in [t.value for t in again.text]
    store.close()


def test_a_step_that_cannot_reach_the_model_shows_an_error(tmp_path, monkeypatch, data):
    db = str(tmp_path / "err.db")
    store = Store(db)
    run_id, roots = pipeline.start_interactive(store, [Seed("Explain inflation.")],
                                               RunConfig(model=MODEL, base_url="http://127.0.0.1:9/v1",
                                                         api_key_env="EVOLAB_MISSING_API_KEY"))
    monkeypatch.delenv("EVOLAB_MISSING_API_KEY", raising=False)
    at = open_page(db, "evolve", query={"run": run_id})
    button(at, "Evolve").click().run()
    clean(at)
    assert at.error and "EVOLAB_MISSING_API_KEY is not set" in read_markdown(at.error[0].value)
    store.close()


# -- runs -------------------------------------------------------------------------------------------------
def test_runs_page_shows_a_finished_run(data):
    at = open_page(data.db, "runs", query={"run": data.batch})
    summary = data.store.run_summary(data.batch)
    assert at.selectbox(key="runs_run").value == data.batch
    assert metric(at, "Kept") == str(summary["by_status"].get("kept", 0))
    assert metric(at, "Eliminated") == str(summary["by_status"].get("eliminated", 0))
    assert metric(at, "Calls") == f"{summary['calls']:,}"
    assert metric(at, "Cost") == f"${summary['cost_usd']:.4f}"
    assert metric(at, "Deepest round") == "2 of 2"
    shown = texts(at)
    assert "finished" in shown and "Finished." in shown
    rules = [d.value for d in at.dataframe if "rule" in getattr(d.value, "columns", [])
             and "nodes" in d.value.columns][0]
    assert dict(zip(rules["rule"], rules["nodes"])) == summary["by_rule"]
    assert "Round 2:" in shown  # the round inspector shows the last round


def test_runs_estimate_start_one_round_then_continue(tmp_path, monkeypatch, stub_module):
    db = str(tmp_path / "runs.db")
    monkeypatch.setenv("EVOLAB_DB", db)
    at = open_page(db, "runs", settings=stub_settings(db, stub_module))
    assert "No batch run yet" in texts(at)
    at.selectbox(key="run_source").set_value(("example", "finance")).run()
    at.number_input(key="run_limit").set_value(3).run()
    at.number_input(key="run_rounds").set_value(2).run()
    assert "Estimate" in texts(at) and "for 3 seeds × 2 rounds" in texts(at)
    estimate = [t.value for t in at.table if "case" in getattr(t.value, "columns", [])][0]
    assert list(estimate["case"]) == ["low", "expected", "high"]
    assert all(int(c.replace(",", "")) > 0 for c in estimate["calls"]) and all(estimate["time"] != "–")
    assert "assumed for a hosted model" in texts(at)  # no stored call of the stub yet: the assumption is stated

    button(at, "Run round 1 only").click().run()
    clean(at)
    store = Store(db)
    run_id = store.list_runs()[0]["id"]
    wait_for_worker(run_id)
    assert store.get_run(run_id)["status"] == "paused"
    at.run()
    shown = texts(at)
    assert "paused" in shown and "Round 1:" in shown
    assert metric(at, "Deepest round") == "1 of 2"
    # inspect round 1: every seed made one node
    table = [d.value for d in at.dataframe if "instruction" in getattr(d.value, "columns", [])
             and "operation" in d.value.columns][0]
    assert len(table) == 3 and set(table["status"]) <= {"kept", "eliminated", "failed"}

    button(at, "Run through round 2 only").click().run()
    wait_for_worker(run_id)
    at.run()
    assert store.get_run(run_id)["status"] == "finished"
    assert metric(at, "Deepest round") == "2 of 2" and "Finished." in texts(at)
    # the run config carries the endpoint and the key *name* only
    cfg = store.get_run(run_id)["config"]
    assert cfg.base_url == stub_module.base_url and cfg.api_key_env == STUB_KEY_ENV
    store.close()


class _GateAfterFirstChild:
    """The scripted model, but once the run has stored its first child every reply waits until the test opens
    the gate: the page is looked at while the run is surely running, with an ETA to show."""

    def __init__(self, db: str):
        self.db = db
        self.open, self.blocked = threading.Event(), threading.Event()

    def __call__(self, messages, purpose):
        if not self.open.is_set():
            with sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=5) as conn:
                children = conn.execute("SELECT COUNT(*) FROM nodes WHERE round > 0 AND status != ?",
                                        (PENDING,)).fetchone()[0]
            if children:
                self.blocked.set()
                self.open.wait(120)
        return scripted_reply(messages, purpose)


def test_a_run_can_be_stopped_and_resumed(tmp_path, monkeypatch):
    db = str(tmp_path / "stop.db")
    gate = _GateAfterFirstChild(db)
    with StubServer(handler=gate) as slow:
        store = Store(db)
        cfg = RunConfig(model=MODEL, base_url=slow.base_url, api_key_env=STUB_KEY_ENV, rounds=3, concurrency=2)
        run_id = pipeline.create_run(store, load_example("general")[:4], cfg, name="slow")
        settings = stub_settings(db, slow)
        at = open_page(db, "runs", settings=settings, query={"run": run_id})
        try:
            button(at, "Start").click().run()
            assert worker.is_running(run_id)
            assert gate.blocked.wait(60), "the run stored no child"
            at.run()
            assert "running" in texts(at)
            assert metric(at, "ETA") != "–"  # a duration, from the pace of the first child
            button(at, "Stop").click().run()
        finally:
            gate.open.set()  # the steps in flight finish; the run stops before the many steps left
        wait_for_worker(run_id)
        assert store.get_run(run_id)["status"] == "stopped"
        at.run()
        button(at, "Resume to the end").click().run()
        wait_for_worker(run_id)
        assert store.get_run(run_id)["status"] == "finished"
        store.close()


# -- analysis pages ---------------------------------------------------------------------------------------
def test_lineage_shows_the_tree_and_the_remembered_node(data):
    nodes = data.store.nodes(data.batch)
    child = next(n for n in nodes if n.round == 2)
    at = open_page(data.db, "lineage", query={"run": data.batch, "node": child.id})
    assert at.selectbox(key="lineage_seed").value == child.root_id
    assert len(at.get("plotly_chart")) == 1
    assert child.instruction in [t.value for t in at.text]
    assert f"round **{child.round}**" in texts(at)
    # a seed picked by hand shows that seed
    other = next(n for n in nodes if n.parent_id is None and n.id != child.root_id)
    at.selectbox(key="lineage_seed").set_value(other.id).run()
    assert other.instruction in [t.value for t in at.text]


def test_selected_node_id_reads_plotly_selections():
    assert app_support.selected_node_id(None) is None
    assert app_support.selected_node_id({"selection": {"points": []}}) is None
    event = {"selection": {"points": [{"curve_number": 1, "point_index": 0, "customdata": "abc123"}]}}
    assert app_support.selected_node_id(event) == "abc123"
    assert app_support.selected_node_id({"selection": {"points": [{"customdata": ["n1", 3]}]}}) == "n1"
    as_object = SimpleNamespace(selection=SimpleNamespace(points=[{"customdata": "n2"}]))
    assert app_support.selected_node_id(as_object) == "n2"
    # a click on a line or a legend entry carries no node id
    assert app_support.selected_node_id({"selection": {"points": [{"x": 1, "y": 2}]}}) is None


def test_drift_shows_figures_numbers_and_eliminations(data):
    at = open_page(data.db, "drift", query={"run": data.batch})
    charts = at.get("plotly_chart")
    # 4 drift metrics, deltas, eliminations by round and by operation, what each operation did
    assert {f"drift_{m}" for m in ("difficulty", "quality", "cx_index", "instruction_length", "deltas", "elim_round",
                                   "elim_operation", "ops")} <= {c.key for c in charts}
    produced = sum(1 for n in data.store.nodes(data.batch) if n.round > 0)
    assert metric(at, "Evolved nodes") == str(produced)
    assert metric(at, "Rounds") == "2"
    titles = " ".join(json.loads(c.proto.spec)["layout"].get("title", {}).get("text", "") for c in charts)
    assert "Difficulty" in titles and "Quality" in titles and "Eliminations by rule" in titles
    by_rule = data.store.run_summary(data.batch)["by_rule"]
    assert by_rule, "the stub run should have eliminations"
    table = at.dataframe[0].value
    assert set(by_rule) <= set(table.columns)
    at.radio(key="drift_which").set_value("every node (eliminated too)").run()
    clean(at)


def test_diversity_shows_the_map_numbers_and_pairs(data):
    at = open_page(data.db, "diversity", query={"run": data.batch}, timeout=120)
    assert not at.error, [e.value for e in at.error]
    n = len(data.store.nodes(data.batch))
    assert metric(at, "Near-duplicates").endswith(f"of {n}")
    charts = at.get("plotly_chart")
    spec = json.loads(charts[0].proto.spec)
    assert "UMAP" in spec["layout"]["title"]["text"]
    assert {t["name"] for t in spec["data"]} >= {"round 0", "round 1", "round 2"}
    numbers = [d.value for d in at.dataframe if "mean_pairwise_distance" in getattr(d.value, "columns", [])][0]
    assert list(numbers["round"]) == [0, 1, 2]
    at.radio(key="diversity_color").set_value("operation").run()
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert "seed" in {t["name"] for t in spec["data"]}
    # a low threshold finds pairs, listed with both texts
    at.slider(key="diversity_threshold").set_value(0.8).run()
    clean(at)
    # the English-only warning is for the default MiniLM model, not for an embeddings endpoint
    assert "English-only" not in texts(at)


def test_compare_rounds_metrics_and_position_swapped_judge(data):
    settings = stub_settings(data.db, data.stub)
    at = open_page(data.db, "compare", settings=settings, query={"run": data.batch})
    assert at.selectbox(key="compare_round_a").value == 0 and at.selectbox(key="compare_round_b").value == 2
    deltas = [d.value for d in at.dataframe if "change (B - A)" in getattr(d.value, "columns", [])][0]
    assert list(deltas["metric"]) == ["difficulty", "quality", "cx_index", "instruction_length"]
    assert "Not judged yet." in texts(at)
    button(at, "Judge these pairs").click().run()
    comparison = f"{data.batch}:round0-vs-round2"
    job = app_support.judge_job(comparison)
    job.thread.join(30)
    assert job.status == "finished", job.error
    at.run()
    rows = data.store.judgments(comparison)
    assert rows and all(r["first_verdict"] and r["second_verdict"] for r in rows)
    shown = texts(at)
    assert "A (round 0) wins" in shown and "B (round 2) wins" in shown
    table = [d.value for d in at.dataframe if "outcome for A" in getattr(d.value, "columns", [])][0]
    assert len(table) == len(rows) and {"A first", "A second"} <= set(table.columns)
    # two runs: the step-through session against the batch run shares seeds
    at.radio(key="compare_mode").set_value("two runs").run()
    clean(at)


def test_export_counts_filters_card_and_files(data):
    at = open_page(data.db, "export", query={"run": data.batch})
    from evolab.export.formats import select_nodes

    kept = select_nodes(data.store, data.batch)
    assert metric(at, "Records") == str(len(kept))
    labels = [read_markdown(b.label) for b in at.get("download_button")]
    assert any("alpaca.json" in label for label in labels) and len(labels) == 4
    assert "Build and download the slides" in labels
    assert any("Dataset card: stub-batch" in read_markdown(m.value) for m in at.markdown)
    at.radio(key="export_status").set_value("all").run()
    assert metric(at, "Records") == str(len(data.store.nodes(data.batch)))
    at.multiselect(key="export_rules").set_value(["refusal"]).run()
    refused = select_nodes(data.store, data.batch, status="all", rules=["refusal"])
    assert metric(at, "Records") == str(len(refused))
    at.number_input(key="export_min_quality").set_value(5.0).run()
    clean(at)

    # the files the buttons build on click
    for fmt in ("alpaca", "sharegpt", "openai", "lineage"):
        body = app_support.export_bytes(data.db, data.batch, fmt, {"status": "kept"}).decode()
        records = json.loads(body) if fmt in ("alpaca", "sharegpt") else [json.loads(x) for x in body.splitlines()]
        assert len(records) == len(kept)
    assert "사회초년생" in app_support.export_bytes(data.db, data.batch, "alpaca", {"status": "kept"}).decode()
    assert share.card_file(data.db, data.batch, ["alpaca"], "", {"status": "kept"}).decode().count("# Dataset card") == 1
    html = app_support.report_bytes(data.db, data.batch).decode()
    assert html.startswith("<!DOCTYPE html>") and "stub-batch" in html


# -- helpers ------------------------------------------------------------------------------------------------
def test_progress_info_eta_and_actions(data):
    children = [n for n in data.store.nodes(data.batch) if n.round > 0]
    job = SimpleNamespace(alive=True, started_at=min(n.created_at for n in children) - 1, until_round=None)
    info = app_support.progress_info(data.store, data.batch, job, now=time.time())
    assert info["done"] == len(children) and info["running"]
    assert info["eta_s"] == 0  # every step done
    assert app_support.eta_text(info) == "finishing"  # never "0 s" while the worker still runs
    assert app_support.eta_seconds(0, 10, 5.0) is None
    assert app_support.eta_seconds(5, 10, 20.0) == 40.0
    assert app_support.next_action("paused", 1, 2) == "continue"
    assert app_support.next_action("paused", 2, 2) == "done"
    assert app_support.next_action("created", 0, 2) == "start"
    assert app_support.format_duration(75) == "1 min 15 s"
    with pytest.raises(ValueError, match="at least one operation"):
        app_support.weights_from_frame(pd.DataFrame({"operation": ["deepen"], "weight": [0]}))
    with pytest.raises(ValueError, match="negative"):
        app_support.weights_from_frame(pd.DataFrame({"operation": ["deepen"], "weight": [-1]}))


def test_local_settings_use_short_replies():
    local = Settings(db_path="x.db")
    assert local.uses_local_model and local.run_config().max_tokens_respond == 192
    assert local.run_config().base_url is None and local.run_config().model == "smollm2"
    remote = Settings(db_path="x.db", base_url="https://api.openai.com/v1", model="gpt-4o-mini")
    assert remote.run_config().max_tokens_respond == RunConfig().max_tokens_respond
    assert remote.problems() == []
    assert Settings(base_url="https://x/v1").problems()  # no model named


# -- speed ----------------------------------------------------------------------------------------------------
def big_run(store: Store, n_nodes: int = 1000) -> str:
    """A finished run of `n_nodes` nodes written straight to the store (100 seeds, 9 rounds)."""
    rng = random.Random(0)
    seeds = [Seed(f"Seed instruction number {i} about topic {i % 17}", skill=f"skill{i % 5}") for i in range(100)]
    run_id = store.create_run(RunConfig(model=MODEL, rounds=9), seeds, name="big")
    ops = ["constraints", "deepen", "concretize", "reasoning", "breadth"]
    made = 0
    for i, s in enumerate(seeds):
        parent = Node(id=f"s{i}", run_id=run_id, parent_id=None, root_id=f"s{i}", round=0, operation="seed",
                      instruction=s.instruction, status="seed", skill=s.skill, response="answer")
        store.record_step(parent, [Score(parent.id, "difficulty", 3.0, "stub"),
                                   Score(parent.id, "quality", 4.0, "stub")])
        made += 1
        for r in range(1, 10):
            if made >= n_nodes:
                break
            status = "kept" if rng.random() > 0.2 else "eliminated"
            node = Node(id=f"s{i}r{r}", run_id=run_id, parent_id=parent.id, root_id=f"s{i}", round=r,
                        operation=rng.choice(ops),
                        instruction=f"{parent.instruction} and constraint {r} {rng.random()}",
                        status=status, rule=None if status == "kept" else rng.choice(["refusal", "prompt_leak"]),
                        response="an answer " * 20, prompt="PROMPT", raw_output="RAW")
            store.record_step(node, [Score(node.id, "difficulty", 3.0 + r * 0.5 + rng.random(), "stub"),
                                     Score(node.id, "quality", 4.0 - rng.random(), "stub")])
            made += 1
            if status == "kept":
                parent = node
    store.set_run_status(run_id, "finished")
    return run_id


def test_pages_open_on_a_run_of_1000_nodes(tmp_path):
    """Every analysis page draws a 1,000-node run, first open (filling the caches) and again; how long they
    take is measured in bench/pages.py, not asserted here."""
    db = str(tmp_path / "big.db")
    store = Store(db)
    run_id = big_run(store)
    assert len(store.nodes(run_id)) == 1000
    at = open_page(db, "runs", query={"run": run_id})
    for page in ["runs", "lineage", "drift", "compare", "export", "diversity"]:
        for _ in range(2):  # first open fills the caches; the second is served from them
            at.switch_page(f"pages/{page}.py").run(timeout=120)
            clean(at)
            assert not at.error, (page, [e.value for e in at.error])
    store.close()
