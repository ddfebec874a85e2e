"""The Review page under AppTest: the queue, one node at a time, Keep stored beside the rule's verdict, the node
leaving the queue, and the agreement table."""
from __future__ import annotations

from test_app import _app_env, _fresh_resources, _navigation_mode, button, open_page, stub_module, texts  # noqa: F401
from test_review import crafted_store

from evolab.audit import review


def progress(at) -> str:
    return " ".join(p.proto.text for p in at.get("progress"))


def queue_args():
    return dict(margin=0.5, audit_size=10, thresholds={"quality": 4.5}, seed=0)


def test_review_page_shows_the_queue_and_keep_is_stored_beside_the_rules_verdict(tmp_path):
    db = str(tmp_path / "review.db")
    store, run_id = crafted_store(db)
    expected = review.review_queue(store, [run_id], **queue_args())
    at = open_page(db, "review", query={"run": run_id})
    shown = texts(at)
    assert "Review" in shown and progress(at) == f"Node 1 of {len(expected)}"
    first = expected.iloc[0]
    assert first["node_id"] in shown  # the node view shows its id
    assert "In the queue because:" in shown and "unreadable verdict or score" in shown
    assert "Parent instruction" in shown and "Explain NPV." in shown
    assert {"Keep", "Discard", "Skip"} <= {b.label for b in at.button}
    assert "No audited reviews yet" in shown

    rules_before = {(s.metric, s.judge): s.value for s in store.scores(node_id=first["node_id"])}
    status_before = store.get_node(first["node_id"]).status
    at.text_input(key="review_name").set_value("mina")
    at.text_input(key=f"review_note_{first['node_id']}").set_value("the judge's reply was fine")
    button(at, "Keep").click().run()
    assert not at.exception
    stored = store.reviews([run_id])
    assert [(r["node_id"], r["verdict"], r["reviewer"], r["note"], r["applied"]) for r in stored] == [
        (first["node_id"], "keep", "mina", "the judge's reply was fine", False)]
    assert stored[0]["reasons"] == list(first["reasons"])
    # The rule's verdict and the node's status are unchanged; the node left the queue; the next one shows.
    assert {(s.metric, s.judge): s.value for s in store.scores(node_id=first["node_id"])} == rules_before
    assert store.get_node(first["node_id"]).status == status_before
    after = review.review_queue(store, [run_id], **queue_args())
    assert first["node_id"] not in set(after["node_id"]) and len(after) == len(expected) - 1
    shown = texts(at)
    assert progress(at) == f"Node 2 of {len(expected)}" and after.iloc[0]["node_id"] in shown
    store.close()


def test_applied_discard_changes_the_data_set_and_audits_feed_the_agreement_table(tmp_path):
    db = str(tmp_path / "apply.db")
    store, run_id = crafted_store(db)
    at = open_page(db, "review", query={"run": run_id})
    at.checkbox(key="review_apply").check().run()
    # Go through the queue, discarding the refused Korean node and keeping everything else.
    for _ in range(60):
        queue = review.review_queue(store, [run_id], **queue_args())
        if queue.empty:
            break
        label = "Discard" if queue.iloc[0]["node_id"] == "refused" else "Keep"
        if label == "Discard":  # the Korean node reads as written: instruction, refusal, the rule's detail
            shown = texts(at)
            assert "복리 이자를 계산하는 방법을 설명하세요." in shown and "죄송하지만 도와드릴 수 없습니다." in shown
            assert "random audit of refusal" in shown
        button(at, label).click().run()
        assert not at.exception
    assert "The queue is empty" in texts(at)
    refused = store.get_node("refused")
    assert refused.status == "eliminated" and refused.rule == "manual"  # applied through the override
    assert [s.value for s in store.scores(node_id="refused") if s.metric == "rule:refusal"] == [0.0]
    table = [d.value for d in at.dataframe if "agree" in getattr(d.value, "columns", [])][0]
    row = table.set_index("check").loc["refusal"]
    assert row["agree"] == row["n"]  # the person agreed with every audited refusal verdict
    assert "Agreement with a person" in texts(at)
    store.close()


def test_review_page_on_an_empty_store_says_what_to_do(tmp_path):
    at = open_page(str(tmp_path / "empty.db"), "review")
    assert "No runs in" in texts(at)


def _audit_refusals(store, run_id, n):
    for i in range(n):
        review.record_review(store, f"kept{i:02d}", "keep", reasons=["audit:refusal"])


def test_drift_shows_the_agreement_and_warns_on_a_small_sample(tmp_path):
    db = str(tmp_path / "drift.db")
    store, run_id = crafted_store(db)
    at = open_page(db, "drift", query={"run": run_id})
    assert "No audited reviews yet" in texts(at)
    _audit_refusals(store, run_id, 4)
    at = open_page(db, "drift", query={"run": run_id})
    assert any("Too small to say anything" in w.value and "refusal" in w.value for w in at.warning)
    table = [d.value for d in at.dataframe if "agree" in getattr(d.value, "columns", [])][0]
    assert table.set_index("check").loc["refusal", ["agree", "n"]].tolist() == [4, 4]
    store.close()


def test_compare_says_what_a_judge_rates_and_shows_the_swap_counts_beside_the_win_rate(tmp_path):
    db = str(tmp_path / "compare.db")
    store, run_id = crafted_store(db)
    comparison = f"{run_id}:round0-vs-round1"
    for key, first, second, outcome in (("k1", "win", "win", "win"), ("k2", "win", "lose", "tie"),
                                        ("k3", None, "tie", "unknown")):
        store.add_judgment({"comparison": comparison, "item_key": key, "label_a": "round 0", "label_b": "round 1",
                            "node_a": "seed", "node_b": "kept00", "first_verdict": first, "second_verdict": second,
                            "outcome": outcome, "judge": "gpt-4o-mini", "detail": "{}"})
    _audit_refusals(store, run_id, 10)
    at = open_page(db, "compare", query={"run": run_id})
    shown = texts(at)
    assert any("rates style more than truth" in w.value and "Gudibande" in w.value for w in at.warning)
    assert "A (round 0) wins 1" in shown  # the win rate, and beside it:
    assert ("the same in both orders for 1 of 2 pair(s); the order changed it for 1 (position bias); "
            "1 unreadable in at least one order") in shown
    assert "Checked answers" in shown and ("no checked answers" in shown.lower())
    table = [d.value for d in at.dataframe if "agree" in getattr(d.value, "columns", [])][0]
    assert table.set_index("check").loc["refusal", ["agree", "n"]].tolist() == [10, 10]
    # Checked answers (issue 12 part B) stored for two round-1 answers: the share shows beside the win rate.
    store.save_answer_check({"node_id": "kept00", "run_id": run_id, "status": "consistent", "k": 3})
    store.save_answer_check({"node_id": "kept01", "run_id": run_id, "status": "inconsistent", "k": 3})
    at = open_page(db, "compare", query={"run": run_id})
    shown = texts(at)
    assert "A (round 0): no checked answers" in shown
    assert "B (round 1): 1 of 2 checked answers consistent (50%)" in shown
    store.close()
