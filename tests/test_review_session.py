"""The Review page keeps its queue between key presses (issue 28) and says only what the run did (issue 23):
the queue is computed once and advanced by each verdict, and a run whose quality filter was off is not audited
against a quality threshold it never applied."""
from __future__ import annotations

import dataclasses

from test_app import _app_env, _fresh_resources, _navigation_mode, button, open_page, stub_module, texts  # noqa: F401
from test_review import crafted_store

from evolab.audit import review
from evolab.schema import Seed


def reasons_of(session: review.ReviewSession) -> set[str]:
    return {r for row in session.pending for r in row["reasons"]}


def with_rules(store, run_id, **rules) -> str:
    """A copy of the crafted run's config under another run id, with these rule settings."""
    config = store.get_run(run_id)["config"]
    config = dataclasses.replace(config, rules=dataclasses.replace(config.rules, **rules))
    return store.create_run(config, [Seed("Explain NPV.")], run_id=f"run-{len(store.list_runs())}")


def test_the_runs_quality_threshold_counts_only_when_its_filter_was_on(tmp_path):
    store, run_id = crafted_store(str(tmp_path / "t.db"))
    assert store.get_run(run_id)["config"].rules.quality_filter is False
    assert review.run_thresholds(store, [run_id]) == {}
    on = with_rules(store, run_id, quality_filter=True, quality_min=4.0)
    assert review.run_thresholds(store, [on]) == {"quality": 4.0}
    switched_off = with_rules(store, run_id, quality_filter=True, off=["low_quality"])
    assert review.run_thresholds(store, [switched_off]) == {}
    assert review.run_thresholds(store, [run_id, on]) == {"quality": 4.0}  # one of the runs applied it
    store.close()


def test_a_session_takes_out_kept_and_discarded_nodes_and_sends_a_skipped_one_to_the_end(tmp_path):
    store, run_id = crafted_store(str(tmp_path / "s.db"))
    whole = review.review_queue(store, [run_id], margin=0.5, audit_size=10, include_reviewed=True)
    session = review.ReviewSession.from_queue(whole)
    order = [r["node_id"] for r in session.pending]
    assert session.total == len(order) and session.done == 0 and session.current()["node_id"] == order[0]
    session.advance(order[0], review.KEEP)
    session.advance(order[1], review.SKIP)
    assert [r["node_id"] for r in session.pending] == order[2:] + [order[1]]
    assert session.done == 1 and session.skipped == 1
    # the same order a fresh queue gives once both verdicts are stored
    review.record_review(store, order[0], review.KEEP)
    review.record_review(store, order[1], review.SKIP)
    fresh = review.review_queue(store, [run_id], margin=0.5, audit_size=10)
    assert list(fresh["node_id"]) == [r["node_id"] for r in session.pending]
    store.close()


def test_the_page_queues_no_quality_audit_when_the_filter_was_off(tmp_path):
    db = str(tmp_path / "off.db")
    store, run_id = crafted_store(db)
    at = open_page(db, "review", query={"run": run_id})
    session = at.session_state["review_queue"]
    assert session.total > 0 and not any("quality>=" in r for r in reasons_of(session))
    assert "The quality filter was off in these runs" in texts(at)
    assert "random audit of quality ≥" not in texts(at)
    # a threshold set on the page audits quality all the same
    at.number_input(key="review_quality").set_value(4.5).run()
    assert any(r.startswith(("audit:quality>=4.5", "near:quality>=4.5"))
               for r in reasons_of(at.session_state["review_queue"]))
    store.close()


def test_the_page_keeps_its_queue_across_key_presses_and_skip_moves_the_node_last(tmp_path):
    db = str(tmp_path / "keys.db")
    store, run_id = crafted_store(db)
    at = open_page(db, "review", query={"run": run_id})
    session = at.session_state["review_queue"]
    first, second = session.pending[0]["node_id"], session.pending[1]["node_id"]
    button(at, "Skip").click().run()
    assert not at.exception
    assert at.session_state["review_queue"] is session  # the same queue object: not computed again
    assert session.pending[-1]["node_id"] == first and session.current()["node_id"] == second
    assert second in texts(at) and "1 skipped" in " ".join(p.proto.text for p in at.get("progress"))
    assert [(r["node_id"], r["verdict"]) for r in store.reviews([run_id])] == [(first, "skip")]
    store.close()


# -- the queue kept in the store, the agreement from the reviewed nodes alone (issue 28: a first open) -------------
def queue_settings() -> dict:
    return dict(margin=0.5, audit_size=10, thresholds={"quality": 4.5}, seed=0)


def no_frames():
    raise AssertionError("the whole run was read again")


def test_the_queue_is_kept_in_the_store_and_read_back_until_the_run_moves_on(tmp_path):
    from evolab.schema import Node, Score
    from evolab.store import Store

    db = str(tmp_path / "kept.db")
    store, run_id = crafted_store(db)
    computed = review.queue_candidates(*review.review_frames(store, [run_id]), **queue_settings())
    first = review.kept_candidates(store, [run_id], **queue_settings())
    assert first.to_dict("records") == computed.to_dict("records") and len(first) > 0
    store.close()
    # Another process on the same store: the candidates come back without reading the run, and order the same.
    again = Store(db)
    back = review.kept_candidates(again, [run_id], frames=no_frames, **queue_settings())
    assert back.to_dict("records") == computed.to_dict("records")
    reviews = [{"node_id": computed.iloc[0]["node_id"], "verdict": review.KEEP}]
    assert (review.order_queue(back, reviews).to_dict("records")
            == review.order_queue(computed, reviews).to_dict("records"))
    # Other settings are computed, not read back.
    wider = review.kept_candidates(again, [run_id], **{**queue_settings(), "margin": 1.5})
    def near_nodes(frame):
        return {r["node_id"] for r in frame.to_dict("records") if "near:quality>=4.5" in r["reasons"]}

    assert "far" in near_nodes(wider) and "far" not in near_nodes(back)
    # The run moves on: a new node near the threshold joins the queue.
    again.save_nodes([Node(id="late", run_id=run_id, parent_id="seed", root_id="seed", round=2, operation="deepen",
                           instruction="A late node", response="An answer.", status="kept")])
    again.add_scores([Score("late", "quality", 4.4, "gpt-4o-mini", "[json] ok")])
    moved = review.kept_candidates(again, [run_id], **queue_settings())
    assert "late" in near_nodes(moved) and "late" not in near_nodes(back)
    # A damaged entry is computed again, not trusted.
    again.set_meta(review.KEPT_QUEUE_PREFIX + run_id, "{not json")
    assert (review.kept_candidates(again, [run_id], **queue_settings()).to_dict("records")
            == moved.to_dict("records"))
    again.close()


def test_the_agreement_reads_only_the_reviewed_nodes_and_says_the_same(tmp_path):
    store, run_id = crafted_store(str(tmp_path / "agree.db"))
    for i in range(4):
        review.record_review(store, f"kept{i:02d}", review.KEEP, reasons=["audit:refusal"])
    review.record_review(store, "refused", review.DISCARD, reasons=["audit:refusal"])
    nodes, scores = review.review_frames(store, [run_id], reviewed_only=True)
    assert set(nodes["id"]) == {"kept00", "kept01", "kept02", "kept03", "refused"}
    assert set(scores["node_id"]) <= set(nodes["id"])
    whole = review.agreement_of(*review.review_frames(store, [run_id]), store.reviews([run_id]))
    assert review.agreement(store, [run_id]).to_dict("records") == whole.to_dict("records")
    assert whole.set_index("check").loc["refusal", ["agree", "n"]].tolist() == [5, 5]
    store.close()


def test_a_new_server_process_opens_the_page_from_the_kept_queue_without_reading_the_run(tmp_path, monkeypatch):
    import streamlit as st

    from ui import common as app_common

    db = str(tmp_path / "process.db")
    store, run_id = crafted_store(db)
    at = open_page(db, "review", query={"run": run_id})
    shown = " ".join(p.proto.text for p in at.get("progress"))
    total = at.session_state["review_queue"].total
    # A new process: nothing cached in memory; reading the whole run again would fail.
    st.cache_data.clear()
    monkeypatch.setattr(app_common, "review_frames", lambda *a, **k: no_frames())
    at = open_page(db, "review", query={"run": run_id})
    assert " ".join(p.proto.text for p in at.get("progress")) == shown == f"Node 1 of {total}"
    store.close()


def test_the_agreement_figure_is_drawn_on_demand_and_the_table_always(tmp_path):
    db = str(tmp_path / "figure.db")
    store, run_id = crafted_store(db)
    for i in range(3):
        review.record_review(store, f"kept{i:02d}", review.KEEP, reasons=["audit:refusal"])
    at = open_page(db, "review", query={"run": run_id})
    assert not at.get("plotly_chart")
    table = [d.value for d in at.dataframe if "agree" in getattr(d.value, "columns", [])][0]
    assert table.set_index("check").loc["refusal", ["agree", "n"]].tolist() == [3, 3]
    at.toggle(key="review_agreement_figure").set_value(True).run()
    assert not at.exception and len(at.get("plotly_chart")) == 1
    store.close()


def test_no_figure_switch_before_any_audited_review(tmp_path):
    db = str(tmp_path / "none.db")
    store, run_id = crafted_store(db)
    at = open_page(db, "review", query={"run": run_id})
    assert "No audited reviews yet" in texts(at) and not at.get("toggle")
    store.close()
