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
