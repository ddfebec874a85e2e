"""The sidebar's structured-output setting: chosen, remembered with the endpoint, carried into runs, and the
probe's finding shown; an unreadable verdict is visible in the node view."""
from __future__ import annotations

from conftest import STUB_KEY_ENV
from streamlit.testing.v1 import AppTest
from test_app import APP, _fresh_resources, _navigation_mode, button, read_markdown, stub_module  # noqa: F401

from evolab.app import support as app_support
from evolab.engine import pipeline
from evolab.llm import scripted_reply
from evolab.schema import RunConfig, Seed
from evolab.store import Store
from evolab.testing.stub_server import StubServer


def test_structured_setting_is_kept_and_reaches_the_run_config(tmp_path, monkeypatch):
    monkeypatch.setenv("EVOLAB_DB", str(tmp_path / "s.db"))
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert at.sidebar.selectbox(key="set_structured").value == "auto"
    at.sidebar.text_input(key="set_url").set_value("https://api.example.com/v1")
    at.sidebar.text_input(key="set_model").set_value("some-model")
    at.sidebar.text_input(key="set_key_env").set_value(STUB_KEY_ENV)
    at.sidebar.selectbox(key="set_structured").set_value("off")
    button(at, "Use these settings").click().run()
    assert not at.sidebar.error
    s = at.session_state["settings"]
    assert s.structured == "off" and s.run_config(rounds=1).structured == "off"
    assert "Structured output: off" in "\n".join(read_markdown(c.value) for c in at.sidebar.caption)
    at = AppTest.from_file(APP, default_timeout=60).run()  # a reload starts from what the store remembers
    assert at.session_state["settings"].structured == "off"


def test_sidebar_says_what_the_probe_found(tmp_path, monkeypatch):
    db = str(tmp_path / "p.db")
    monkeypatch.setenv("EVOLAB_DB", db)
    with StubServer(structured=("json_object",), structured_error=500) as stub:
        settings = app_support.Settings(db_path=db, base_url=stub.base_url, model="gpt-4o-mini",
                                        api_key_env=STUB_KEY_ENV)
        store = Store(db)
        assert "not probed yet" in settings.structured_status(store)
        run_id = pipeline.create_run(store, [Seed("Explain NPV.")], settings.run_config(rounds=1))
        pipeline.run_sync(store, run_id)
        assert "json_object" in settings.structured_status(store)
        at = AppTest.from_file(APP, default_timeout=60)
        at.session_state["settings"] = settings
        at.run()
        assert any("llama.cpp grammar" in read_markdown(c.value) for c in at.sidebar.caption)


def test_an_unreadable_verdict_shows_as_neither_passed_nor_failed(tmp_path):
    def handler(messages, purpose):
        return "Hmm, hard to say." if purpose == "equal" else scripted_reply(messages, purpose)

    store = Store(tmp_path / "u.db")
    with StubServer(handler=handler, structured=()) as stub:
        from conftest import openai_backend_for

        config = RunConfig(model="gpt-4o-mini", base_url=stub.base_url, rounds=1)
        run_id = pipeline.create_run(store, [Seed("Explain NPV.")], config)
        pipeline.run_sync(store, run_id, backend=openai_backend_for(stub))
    child = next(n for n in store.nodes(run_id) if n.round == 1)
    assert (child.status, child.rule) == ("failed", "unreadable")
    detail = app_support.node_detail(store, child.id)
    judged = detail.verdicts[detail.verdicts["judge"] == "gpt-4o-mini"]
    assert len(judged) == 1 and judged["passed"].iloc[0] is None and "unreadable" in judged["detail"].iloc[0]
    assert store.run_summary(run_id)["by_rule"] == {"unreadable": 1}


def test_runs_page_takes_rate_caps_and_shows_them(tmp_path, monkeypatch, stub_module):
    from test_app import _app_env, open_page, stub_settings, texts, wait_for_worker  # noqa: F401

    db = str(tmp_path / "caps.db")
    monkeypatch.setenv("EVOLAB_DB", db)
    at = open_page(db, "runs", settings=stub_settings(db, stub_module))
    at.selectbox(key="run_source").set_value(("example", "general")).run()
    at.number_input(key="run_limit").set_value(2).run()
    at.number_input(key="run_rounds").set_value(1).run()
    at.number_input(key="run_rpm").set_value(600).run()
    at.number_input(key="run_tpm").set_value(200_000).run()
    button(at, "Start run").click().run()
    store = Store(db)
    run_id = store.list_runs()[0]["id"]
    wait_for_worker(run_id)
    cfg = store.get_run(run_id)["config"]
    assert (cfg.rpm, cfg.tpm) == (600, 200_000)
    at.run()
    shown = texts(at)
    assert "at most 600 requests/min" in shown and "at most 200,000 tokens/min" in shown
    store.close()
