"""Checked answers in the app: the share per round on the Drift page, the answer-check filter on the Export page."""
from __future__ import annotations

import json

from test_app import _app_env, _fresh_resources, _navigation_mode, open_page, stub_module, texts  # noqa: F401

from evolab.engine.checking import CONSISTENT, INCONSISTENT, NOT_CHECKABLE
from evolab.schema import Node, RunConfig, Seed
from evolab.store import Store

QUESTIONS = ["How much is $1,000 after 2 years at 5% compounded yearly?", "1억 원의 연 4% 단리 3년 이자는 얼마입니까?",
             "Write an essay about saving."]


def checked_store(tmp_path) -> tuple[str, str]:
    db = str(tmp_path / "checked.db")
    store = Store(db)
    run_id = store.create_run(RunConfig(model="gpt-4o-mini", base_url="http://127.0.0.1:9/v1", rounds=1),
                              [Seed(q) for q in QUESTIONS], name="checked")
    statuses = {0: [CONSISTENT, CONSISTENT, NOT_CHECKABLE], 1: [CONSISTENT, INCONSISTENT, NOT_CHECKABLE]}
    for round_, row in statuses.items():
        for i, (q, status) in enumerate(zip(QUESTIONS, row)):
            node = Node(id=f"r{round_}n{i}", run_id=run_id, parent_id=None if round_ == 0 else f"r0n{i}",
                        root_id=f"r0n{i}", round=round_, operation="seed" if round_ == 0 else "deepen",
                        instruction=q + (" Show the steps." if round_ else ""), response="The answer is 1,102.50.",
                        status="seed" if round_ == 0 else "kept", language="ko" if "억" in q else "en")
            store.save_node(node)
            store.save_answer_check({"node_id": node.id, "run_id": run_id, "status": status, "k": 3,
                                     "reason": "test"})
    store.set_run_status(run_id, "finished")
    store.close()
    return db, run_id


def test_drift_page_shows_the_consistent_share_per_round(tmp_path):
    db, run_id = checked_store(tmp_path)
    at = open_page(db, "drift")
    assert "Checked answers" in texts(at)
    assert "does it make the answers less reliable" in texts(at)
    chart = next(c for c in at.get("plotly_chart") if c.key == "drift_consistency")
    spec = json.loads(chart.proto.spec)
    assert spec["layout"]["yaxis"]["title"]["text"] == "consistent / checked"
    assert len(spec["data"]) == 1  # one run, one line (its values are checked in the table below)
    table = next(df.value for df in at.dataframe if "share" in df.value.columns and "not_checkable" in df.value)
    assert list(table["round"]) == [0, 1]
    assert list(table["share"]) == [1.0, 0.5]
    assert list(table["checked"]) == [2, 2] and list(table["not_checkable"]) == [1, 1]


def test_export_page_filters_by_answer_check(tmp_path):
    db, run_id = checked_store(tmp_path)
    at = open_page(db, "export")
    assert at.metric[0].value == "6"
    at.multiselect(key="export_checked").set_value([CONSISTENT]).run()
    assert at.metric[0].value == "3"
    at.multiselect(key="export_checked").set_value([INCONSISTENT, NOT_CHECKABLE]).run()
    assert at.metric[0].value == "3"


def test_runs_page_starts_a_run_that_checks_answers(tmp_path, monkeypatch, stub_module):
    from test_app import button, stub_settings, wait_for_worker

    db = str(tmp_path / "runs.db")
    monkeypatch.setenv("EVOLAB_DB", db)
    at = open_page(db, "runs", settings=stub_settings(db, stub_module))
    at.selectbox(key="run_source").set_value(("example", "finance")).run()
    at.number_input(key="run_limit").set_value(2).run()
    at.number_input(key="run_rounds").set_value(2).run()
    at.checkbox(key="run_check_answers").check().run()
    button(at, "Run round 1 only").click().run()
    store = Store(db)
    try:
        run_id = store.list_runs()[0]["id"]
        wait_for_worker(run_id)
        assert store.get_run(run_id)["config"].check_answers
        answered = {n.id for n in store.nodes(run_id) if n.status in ("seed", "kept") and n.response}
        checks = store.answer_checks([run_id])
        assert answered and {r["node_id"] for r in checks} == answered
        # the scripted model answers in words: nothing to compare, and no sample was asked for
        assert {r["status"] for r in checks} == {NOT_CHECKABLE}
        assert not [c for c in store.calls(run_id) if c.purpose == "check"]
    finally:
        store.close()
