"""The Templates page under AppTest: versions listed with their text and diff, a tuning session started from the
page runs in the background and shows its candidates, one is adopted, and the Runs page offers it."""
from __future__ import annotations

from conftest import STUB_KEY_ENV
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
)
from test_tuning import CLEAN_LINE, LEAKY_LINE, SEEDS, Model

from evolab.app import tuning as tuning_app
from evolab.app import worker
from evolab.audit import tuning
from evolab.engine import pipeline
from evolab.schema import RunConfig, Seed
from evolab.store import Store
from evolab.testing.stub_server import StubServer


def leaky_store(tmp_path, stub: StubServer, language: str = "en") -> tuple[str, str]:
    db = str(tmp_path / "tpl.db")
    store = Store(db)
    config = RunConfig(model="gpt-4o-mini", base_url=stub.base_url, api_key_env=STUB_KEY_ENV, rounds=1,
                       operation_weights={"constraints": 1.0}, scorers=["complexity", "difficulty"])
    run_id = pipeline.create_run(store, [Seed(s) for s in SEEDS[language][:4]], config, name="leaky")
    assert pipeline.run_sync(store, run_id) == "finished"
    store.close()
    return db, run_id


def wait_for(session_id: str, timeout: float = 60) -> None:
    job = tuning_app.job(f"tune:{session_id}")
    assert job is not None
    job.thread.join(timeout)
    assert not job.alive and job.status == "finished", job.error


def test_tune_adopt_and_pick_on_the_runs_page(tmp_path):
    with StubServer(handler=Model("ko")) as stub:
        db, run_id = leaky_store(tmp_path, stub, "ko")
        at = open_page(db, "templates")
        at.selectbox(key="templates_op").set_value("constraints").run()
        at.selectbox(key="templates_lang").set_value("ko").run()
        clean(at)
        page = texts(at)
        assert "Versions" in page and "4 ko children of **constraints** were eliminated" in page
        assert any(LEAKY_LINE["ko"] in c.value for c in at.code)  # the shipped text is shown
        at.number_input(key="templates_candidates").set_value(3)
        at.number_input(key="templates_dev_seeds").set_value(2)
        button(at, "Start tuning").click().run()
        clean(at)
        session_id = at.session_state["templates_session"]
        wait_for(session_id)
        at.run()
        clean(at)
        page = texts(at)
        assert "Lowest failure rate: candidate 1" in page
        assert "Rejected: drops {instruction}" in page
        table = [d.value for d in at.dataframe if "failure_rate" in d.value.columns][0]
        assert table.set_index("candidate").loc[0, "failure_rate"] == 1.0
        assert table.set_index("candidate").loc[1, "failure_rate"] == 0.0
        assert any("+" + CLEAN_LINE["ko"] in c.value for c in at.code)  # the candidate's diff
        at.text_input(key="templates_adopt_name").set_value("깨끗한")
        button(at, "Adopt").click().run()
        clean(at)
        assert "Saved as 깨끗한" in texts(at)

    store = Store(db)
    assert [v.name for v in tuning_app.template_choices(store)["constraints"]] == ["깨끗한"]
    # The version list shows it with its parent, and its diff against the shipped text.
    at = open_page(db, "templates")
    at.selectbox(key="templates_lang").set_value("ko").run()
    versions = [d.value for d in at.dataframe if "parent" in d.value.columns][0]
    assert list(versions["name"]) == ["shipped", "깨끗한"]
    new = versions.set_index("name").loc["깨끗한"]
    at.selectbox(key="templates_version").set_value(new["version"]).run()
    clean(at)
    assert any("-" + LEAKY_LINE["ko"] in c.value and "+" + CLEAN_LINE["ko"] in c.value for c in at.code)
    # The Runs page offers the version; a run started with it picked records it and sends its wording.
    store.save_seed_set("ko-seeds", [Seed(t) for t in SEEDS["ko"][:2]])
    with StubServer(handler=Model("ko")) as stub:
        at = open_page(db, "runs", settings=stub_settings(db, stub))
        pick = at.selectbox(key="run_template_constraints")
        assert pick.options == ["shipped", f"ko: 깨끗한 ({new['version']})"]
        adopted = tuning_app.template_choices(store)["constraints"][0]
        pick.set_value(adopted).run()
        at.selectbox(key="run_source").set_value(("set", "ko-seeds")).run()
        at.number_input(key="run_rounds").set_value(1).run()
        button(at, "Start run").click().run()
        clean(at)
        run_id = store.latest_run_id()
        worker.wait(run_id, 60)
    run = store.get_run(run_id)
    assert run["config"].templates == {"ko/constraints": new["version"]}
    made = [n for n in store.nodes(run_id) if n.operation == "constraints"]
    assert made and all(CLEAN_LINE["ko"] in n.prompt and n.template_version == new["version"] for n in made)


def test_page_without_runs_and_without_failures(tmp_path):
    db = str(tmp_path / "empty.db")
    Store(db).close()
    at = open_page(db, "templates")
    assert "Versions" in texts(at) and any("#Given Prompt#" in c.value for c in at.code)
    with StubServer() as stub:  # the cooperative scripted model: nothing is eliminated
        store = Store(db)
        config = RunConfig(model="gpt-4o-mini", base_url=stub.base_url, api_key_env=STUB_KEY_ENV, rounds=1,
                           operation_weights={"constraints": 1.0}, scorers=["complexity", "difficulty"])
        pipeline.run_sync(store, pipeline.create_run(store, [Seed(SEEDS["en"][0])], config))
        store.close()
    at = open_page(db, "templates")
    at.selectbox(key="templates_op").set_value("constraints").run()
    clean(at)
    assert "Nothing to learn from" in texts(at)
    assert button(at, "Start tuning").disabled


def test_session_progress_counts_dev_children(tmp_path):
    with StubServer(handler=Model("en")) as stub:
        db, run_id = leaky_store(tmp_path, stub, "en")
        store = Store(db)
        sid = tuning.start_session(store, run_id, "constraints", candidates=3, dev_seeds=3)
        assert tuning_app.session_progress(store, store.tuning_session(sid)) == (0, 0)
        tuning_app.start_tuning(db, sid)
        wait_for(sid)
    # the baseline and two valid candidates (one drops {instruction}), 3 dev seeds each
    assert tuning_app.session_progress(store, store.tuning_session(sid)) == (9, 9)
