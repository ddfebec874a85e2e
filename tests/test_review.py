"""The review queue's selection rules, the reviews stored beside the rules' verdicts, and the agreement figures
against hand-computed values (Wilson intervals), on a crafted store with English and Korean nodes."""
from __future__ import annotations

import math

import pandas as pd
import pytest

from evolab.analysis import viz
from evolab.audit import judge, review
from evolab.schema import Node, RunConfig, Score, Seed
from evolab.store import Store

MODEL = "gpt-4o-mini"
H = "heuristic"


def _node(run_id, node_id, status, *, rule=None, round_=1, instruction="", language="en", response="An answer."):
    return Node(id=node_id, run_id=run_id, parent_id="seed", root_id="seed", round=round_, operation="deepen",
                instruction=instruction or f"Instruction of {node_id}", response=response, status=status, rule=rule,
                language=language)


def passed(node_id, *rules, judge_=H):
    return [Score(node_id, f"rule:{r}", 1.0, judge_, "passed") for r in rules]


def crafted_store(path, n_kept: int = 12) -> tuple[Store, str]:
    """A run with every case the queue knows, plus `n_kept` plain kept nodes for the audit sample."""
    store = Store(path)
    run_id = store.create_run(RunConfig(model=MODEL, rounds=2), [Seed("Explain NPV.")], run_id="run-a")
    seed = Node(id="seed", run_id=run_id, parent_id=None, root_id="seed", round=0, operation="seed",
                instruction="Explain NPV.", response="NPV is...", status="seed")
    nodes = [seed]
    scores: list[Score] = [Score("seed", "quality", 4.4, MODEL, "[json] fine")]  # a seed is never queued
    cheap = ("truncated", "no_new_information", "prompt_leak")
    # Kept nodes: every rule passed (the LLM equality judge too), quality far above the threshold.
    for i in range(n_kept):
        nid = f"kept{i:02d}"
        nodes.append(_node(run_id, nid, "kept", instruction=f"Kept instruction {i}"))
        scores += passed(nid, *cheap, "refusal", "empty_response") + passed(nid, "no_new_information", judge_=MODEL)
        scores += [Score(nid, "quality", 5.0, MODEL, "[json] good"), Score(nid, "difficulty", 7.0, MODEL, "[json]")]
    # Eliminated by the refusal rule (a heuristic), Korean.
    nodes.append(_node(run_id, "refused", "eliminated", rule="refusal", language="ko",
                       instruction="복리 이자를 계산하는 방법을 설명하세요.", response="죄송하지만 도와드릴 수 없습니다."))
    scores += passed("refused", *cheap) + [Score("refused", "rule:refusal", 0.0, H, "refusal: 죄송하지만")]
    # Eliminated by the LLM equality judge.
    nodes.append(_node(run_id, "equal", "eliminated", rule="no_new_information"))
    scores += passed("equal", *cheap, "refusal", "empty_response")
    scores += [Score("equal", "rule:no_new_information", 0.0, MODEL, "judge says Equal: 'Equal'")]
    # The equality judge's reply was unreadable: the step failed as unreadable.
    nodes.append(_node(run_id, "unread", "failed", rule="unreadable"))
    scores += passed("unread", *cheap) + [
        Score("unread", "rule:no_new_information", None, MODEL, "equality judge: unreadable reply (asked twice)")]
    # Kept, but its quality score was unreadable.
    nodes.append(_node(run_id, "qunread", "kept"))
    scores += passed("qunread", *cheap) + passed("qunread", "no_new_information", judge_=MODEL)
    scores += [Score("qunread", "quality", None, MODEL, "unreadable reply (asked twice): 'good'")]
    # Quality near the threshold (4.2 vs 4.5) and far from it (3.0); Korean near one.
    nodes.append(_node(run_id, "near", "kept", language="ko", instruction="월 적립식 투자의 수익률을 계산하세요."))
    scores += passed("near", *cheap) + [Score("near", "quality", 4.2, MODEL, "[json] ok")]
    nodes.append(_node(run_id, "far", "kept"))
    scores += passed("far", *cheap) + [Score("far", "quality", 3.0, MODEL, "[json] weak")]
    # Passed the refusal rule, then the quality filter eliminated it: the refusal rule did not decide it.
    nodes.append(_node(run_id, "lowq", "eliminated", rule="low_quality"))
    scores += passed("lowq", *cheap, "refusal") + [Score("lowq", "rule:low_quality", 0.0, H, "quality 2 < 4.5"),
                                                   Score("lowq", "quality", 2.0, MODEL, "[json] poor")]
    store.save_nodes(nodes)
    store.add_scores(scores)
    return store, run_id


@pytest.fixture
def crafted(tmp_path):
    store, run_id = crafted_store(tmp_path / "r.db")
    yield store, run_id
    store.close()


def reasons_by_node(queue):
    return {r["node_id"]: r["reasons"] for r in queue.to_dict("records")}


# -- the queue ------------------------------------------------------------------------------------------------
def test_queue_picks_unreadable_llm_judge_and_near_threshold_nodes(crafted):
    store, run_id = crafted
    queue = review.review_queue(store, [run_id], margin=0.4, audit_size=0, thresholds={"quality": 4.5})
    got = reasons_by_node(queue)
    assert got == {"unread": ["unreadable"], "qunread": ["unreadable"], "equal": ["llm_judge"],
                   "near": ["near:quality>=4.5"]}
    assert list(queue["node_id"][:2]) == ["qunread", "unread"]  # unreadable first, then the judge, then near
    assert list(queue["node_id"][2:]) == ["equal", "near"]
    assert "seed" not in got  # quality 4.4 is near 4.5, but seeds are not reviewed
    # The margin is the user's: a wider one takes the 3.0 node too, a narrower one drops 4.2.
    wide = reasons_by_node(review.review_queue(store, [run_id], margin=1.5, audit_size=0, thresholds={"quality": 4.5}))
    assert "far" in wide and "near" in wide
    narrow = reasons_by_node(review.review_queue(store, [run_id], margin=0.2, audit_size=0,
                                                 thresholds={"quality": 4.5}))
    assert "near" not in narrow


def test_audit_sample_per_check_holds_kept_nodes_and_is_stable(crafted):
    store, run_id = crafted
    queue = review.review_queue(store, [run_id], margin=0.0, audit_size=3, thresholds={"quality": 4.5}, seed=7)
    audited: dict[str, list[str]] = {}
    for node_id, reasons in reasons_by_node(queue).items():
        for r in reasons:
            if r.startswith("audit:"):
                audited.setdefault(r[6:], []).append(node_id)
    # Every check that decided nodes has a sample of the size asked for (or all it decided, when fewer).
    checks = review.checks_frame(*review.review_frames(store, [run_id]), {"quality": 4.5})
    decided = checks[checks["auto"].notna()].groupby("check")["node_id"].nunique()
    assert {k: len(v) for k, v in audited.items()} == {k: min(3, int(v)) for k, v in decided.items()}
    assert audited["low_quality"] == ["lowq"] and len(audited["refusal"]) == 3
    # A kept node is in the samples: agreement with "keep" is measurable.
    assert any(n.startswith("kept") for n in audited["refusal"])
    # "lowq" passed the refusal rule but another rule eliminated it: not in the refusal rule's sample.
    refusal = checks[checks["check"] == "refusal"].set_index("node_id")["auto"]
    assert refusal["refused"] == "discard" and refusal["kept00"] == "keep" and pd.isna(refusal["lowq"])
    # The same queue on every reload; another seed draws another sample.
    again = review.review_queue(store, [run_id], margin=0.0, audit_size=3, thresholds={"quality": 4.5}, seed=7)
    assert again.equals(queue)
    other = review.review_queue(store, [run_id], margin=0.0, audit_size=3, thresholds={"quality": 4.5}, seed=8)
    assert set(other["node_id"]) != set(queue["node_id"])


def test_reviewed_nodes_leave_the_queue_and_skipped_ones_go_last(crafted):
    store, run_id = crafted
    args = dict(margin=0.4, audit_size=0, thresholds={"quality": 4.5})
    first = review.review_queue(store, [run_id], **args)
    review.record_review(store, "qunread", "keep", reasons=first.loc[0, "reasons"], reviewer="mina", note="fine")
    review.record_review(store, "unread", "skip", reasons=["unreadable"])
    after = review.review_queue(store, [run_id], **args)
    assert "qunread" not in set(after["node_id"])
    assert after["node_id"].iloc[-1] == "unread" and bool(after["skipped"].iloc[-1])
    # The latest review counts: a later keep takes the skipped node out.
    review.record_review(store, "unread", "keep")
    assert "unread" not in set(review.review_queue(store, [run_id], **args)["node_id"])
    assert len(store.reviews([run_id], latest_only=False)) == 3 and len(store.reviews([run_id])) == 2


def test_a_review_is_stored_beside_the_rules_verdicts(crafted):
    store, run_id = crafted
    before = {(s.metric, s.judge): (s.value, s.detail) for s in store.scores(node_id="refused")}
    row = review.record_review(store, "refused", "keep", reasons=["audit:refusal"], reviewer="지민",
                               note="거절이 아니라 조언입니다")
    assert not row["applied"]
    node = store.get_node("refused")
    assert (node.status, node.rule) == ("eliminated", "refusal")  # not applied: the data set is unchanged
    assert {(s.metric, s.judge): (s.value, s.detail) for s in store.scores(node_id="refused")} == before
    stored = store.reviews([run_id])[0]
    assert (stored["verdict"], stored["reviewer"], stored["note"], stored["reasons"]) == (
        "keep", "지민", "거절이 아니라 조언입니다", ["audit:refusal"])
    # Applied to the data set: the status changes through the override; the rule's verdict row stays.
    row = review.record_review(store, "refused", "keep", reasons=["audit:refusal"], apply=True)
    assert row["applied"]
    node = store.get_node("refused")
    assert node.status == "kept" and "was eliminated (refusal)" in node.detail
    assert {(s.metric, s.judge): (s.value, s.detail) for s in store.scores(node_id="refused")} == before


def test_bad_review_input_is_refused_with_a_clear_message(crafted):
    store, _ = crafted
    with pytest.raises(ValueError, match="keep, discard, skip"):
        review.record_review(store, "refused", "maybe")
    with pytest.raises(KeyError, match="No node"):
        review.record_review(store, "nope", "keep")
    assert store.reviews(["run-a"]) == []


def test_deleting_a_run_deletes_its_reviews(crafted):
    store, run_id = crafted
    review.record_review(store, "refused", "discard")
    store.delete_run(run_id)
    assert store.reviews([run_id], latest_only=False) == []


# -- agreement ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("agree, n, low, high", [
    (8, 10, 0.490, 0.943),  # by hand: centre (0.8 + 1.92/10) / 1.384 = 0.717, half 0.227
    (10, 10, 0.722, 1.000),
    (5, 10, 0.237, 0.763),
    (0, 4, 0.000, 0.490),
    (45, 50, 0.786, 0.957),
])
def test_wilson_interval_against_hand_computed_values(agree, n, low, high):
    got = review.wilson_interval(agree, n)
    assert got == pytest.approx((low, high), abs=5e-4)


def test_wilson_interval_of_nothing_is_unknown():
    assert all(math.isnan(v) for v in review.wilson_interval(0, 0))


def test_agreement_counts_only_the_audit_sample(tmp_path):
    store, run_id = crafted_store(tmp_path / "a.db", n_kept=12)
    # The refusal rule's sample: 10 kept nodes (rule said keep) and the refused one (rule said discard).
    for i in range(10):
        verdict = "keep" if i < 8 else "discard"  # the person disagrees on two kept nodes
        review.record_review(store, f"kept{i:02d}", verdict, reasons=["audit:refusal", "audit:quality>=4.5"])
    review.record_review(store, "refused", "discard", reasons=["audit:refusal"])
    # Reviews for other reasons, or skipped, do not count; nor a node the refusal rule did not decide.
    review.record_review(store, "near", "discard", reasons=["near:quality>=4.5"])
    review.record_review(store, "kept10", "skip", reasons=["audit:refusal"])
    review.record_review(store, "lowq", "keep", reasons=["audit:refusal"])
    frame = review.agreement(store, [run_id]).set_index("check")
    refusal = frame.loc["refusal"]
    assert (refusal["agree"], refusal["n"]) == (9, 11)
    assert refusal["share"] == pytest.approx(9 / 11)
    assert (refusal["low"], refusal["high"]) == pytest.approx(review.wilson_interval(9, 11))
    assert refusal["rule keep, person discard"] == 2 and refusal["rule discard, person keep"] == 0
    assert refusal["kind"] == "rule" and not refusal["too_small"]
    quality = frame.loc["quality>=4.5"]  # the scorer at the threshold the reviews were made with
    assert (quality["agree"], quality["n"], quality["kind"]) == (8, 10, "scorer")
    assert (quality["low"], quality["high"]) == pytest.approx((0.490, 0.943), abs=5e-4)
    assert not quality["too_small"]  # n = 10, width 0.45
    assert set(frame.index) == {"refusal", "quality>=4.5"}
    store.close()


def test_small_samples_are_flagged(tmp_path):
    store, run_id = crafted_store(tmp_path / "s.db")
    for i in range(4):
        review.record_review(store, f"kept{i:02d}", "keep", reasons=["audit:truncated"])
    frame = review.agreement(store, [run_id])
    row = frame.set_index("check").loc["truncated"]
    assert (row["agree"], row["n"]) == (4, 4) and row["too_small"]
    assert "truncated" in review.agreement_note(frame)
    assert review.too_small(10, 0.237, 0.763)  # n = 10 but the interval is wider than 0.5
    assert not review.too_small(10, 0.490, 0.943)
    store.close()


def test_agreement_figure_draws_each_check_with_its_interval(crafted):
    store, run_id = crafted
    for i in range(3):
        review.record_review(store, f"kept{i:02d}", "keep", reasons=["audit:refusal"])
    fig = viz.agreement_figure(review.agreement(store, [run_id]))
    assert list(fig.data[0].y) == ["refusal (n = 3)"] and list(fig.data[0].x) == [1.0]
    assert fig.data[0].marker.color == ("#bbbbbb",)  # too small: grey
    assert viz.is_empty_figure(viz.agreement_figure(review.agreement(store, ["no-such-run"])))


# -- what is said where judges appear ---------------------------------------------------------------------------
def test_position_swap_counts():
    rows = [{"first_verdict": "win", "second_verdict": "win"}, {"first_verdict": "win", "second_verdict": "lose"},
            {"first_verdict": "tie", "second_verdict": "tie"}, {"first_verdict": None, "second_verdict": "win"}]
    assert judge.position_swap_counts(rows) == {"pairs": 4, "both_read": 3, "same": 2, "flipped": 1, "unread": 1}


def test_checked_share_is_none_without_checked_answers(crafted):
    store, run_id = crafted
    assert review.checked_share(store, [run_id]) is None
    assert "Gudibande" in review.JUDGE_CAVEAT and "style" in review.JUDGE_CAVEAT


def test_checked_share_line_reads_part_bs_frame():
    frame = pd.DataFrame([
        {"run_id": "r", "round": 0, "checked": 4, "consistent": 4, "inconsistent": 0, "not_checkable": 1, "share": 1.0},
        {"run_id": "r", "round": 2, "checked": 5, "consistent": 3, "inconsistent": 2, "not_checkable": 0, "share": .6},
        {"run_id": "s", "round": 2, "checked": 0, "consistent": 0, "inconsistent": 0, "not_checkable": 3,
         "share": float("nan")}])
    assert review.checked_share_line(frame, "A (round 2)", "r", [2]) == (
        "A (round 2): 3 of 5 checked answers consistent (60%)")
    assert review.checked_share_line(frame, "run r", "r") == (
        "run r: 7 of 9 checked answers consistent (78%), 1 not checkable")
    assert review.checked_share_line(frame, "B", "s") == "B: no checked answers (3 not checkable)"
    assert review.checked_share_line(None, "B", "s") == "B: no checked answers"


def test_checked_share_comes_from_the_stored_answer_checks(crafted):
    store, run_id = crafted
    if not hasattr(store, "save_answer_check"):
        pytest.skip("this store has no answer checks yet (issue 12 part B)")
    for node_id, status in (("kept00", "consistent"), ("kept01", "inconsistent"), ("kept02", "not_checkable")):
        store.save_answer_check({"node_id": node_id, "run_id": run_id, "status": status, "k": 3})
    frame = review.checked_share(store, [run_id])
    assert review.checked_share_line(frame, "this run", run_id) == (
        "this run: 1 of 2 checked answers consistent (50%), 1 not checkable")


class _NoEmbedder:
    name = "none"

    def encode(self, texts):
        raise RuntimeError("no embedding model in this test")


def test_report_says_what_a_judge_rates_with_swap_counts_and_the_agreement(crafted, tmp_path):
    from evolab.analysis.report import write_report

    store, run_id = crafted
    html = write_report(store, run_id, tmp_path / "plain.html", embedder=_NoEmbedder()).read_text("utf-8")
    assert "Agreement with a person" in html and "No audited reviews yet" in html
    assert "Pairwise judgments" not in html  # no win rate, so nothing to qualify
    comparison = f"{run_id}:round0-vs-round1"
    for key, first, second, outcome in (("k1", "win", "win", "win"), ("k2", "lose", "win", "tie")):
        store.add_judgment({"comparison": comparison, "item_key": key, "label_a": "round 0", "label_b": "round 1",
                            "first_verdict": first, "second_verdict": second, "outcome": outcome, "judge": MODEL})
    for i in range(4):
        review.record_review(store, f"kept{i:02d}", "keep", reasons=["audit:refusal"])
    html = write_report(store, run_id, tmp_path / "r.html", embedder=_NoEmbedder()).read_text("utf-8")
    assert "rates style more than truth" in html and "Gudibande et al. 2023" in html
    assert "same verdict both orders" in html and "order changed verdict" in html
    assert "Checked answers" in html
    assert "Too small to say anything" in html and "refusal (n = 4)" in html


# -- on what the engine writes --------------------------------------------------------------------------------
def test_the_queue_reads_the_verdicts_a_real_run_stores(tmp_path):
    """A run through the stub server (English and Korean seeds) whose model sometimes says Equal, sometimes gives
    an equality verdict no one can read, and sometimes refuses: the queue finds each case from the rows the
    engine wrote, and a review applied to the data set leaves those rows as they were."""
    import hashlib

    from conftest import openai_backend_for

    from evolab.engine import pipeline
    from evolab.llm.fake import scripted_reply
    from evolab.schema import RuleConfig
    from evolab.seeds.files import load_example
    from evolab.testing.stub_server import StubServer

    def handler(messages, purpose):
        # The equality question by its first message (the retry adds a stricter one: still unreadable).
        h = int(hashlib.sha256(messages[0 if purpose == "equal" else -1]["content"].encode()).hexdigest(), 16)
        # (which prompts draw which reply follows the scripted model's text: one in six of about 14 questions)
        if purpose == "equal" and h % 6 == 2:
            return "Equal"
        if purpose == "equal" and h % 6 == 1:
            return "Hmm, that is hard to say."
        if purpose == "respond" and h % 4 == 0:
            return "죄송하지만 도와드릴 수 없습니다." if "다" in messages[-1]["content"] else "Sorry, I cannot help with that."
        return scripted_reply(messages, purpose)

    store = Store(tmp_path / "run.db")
    seeds = load_example("finance")[:4] + load_example("general")[:2]
    with StubServer(handler=handler, structured=()) as stub:
        config = RunConfig(model=MODEL, base_url=stub.base_url, rounds=2, fanout=2,
                           rules=RuleConfig(quality_filter=True, quality_min=4.0))
        run_id = pipeline.create_run(store, seeds, config)
        assert pipeline.run_sync(store, run_id, backend=openai_backend_for(stub)) == "finished"
    nodes = {n.id: n for n in store.nodes(run_id)}
    by_rule = {}
    for n in nodes.values():
        by_rule.setdefault(n.rule, set()).add(n.id)
    assert by_rule.get("unreadable") and by_rule.get("refusal") and by_rule.get("low_quality")
    judged_equal = {s.node_id for s in store.scores(run_id)
                    if s.metric == "rule:no_new_information" and s.judge == MODEL and s.value == 0}
    assert judged_equal

    queue = review.review_queue(store, [run_id], margin=0.5, audit_size=50, thresholds={"quality": 4.0})
    reasons = reasons_by_node(queue)
    assert {n for n, r in reasons.items() if "unreadable" in r} >= by_rule["unreadable"]
    assert {n for n, r in reasons.items() if "llm_judge" in r} == judged_equal
    audited = {r[6:] for rs in reasons.values() for r in rs if r.startswith("audit:")}
    assert {"refusal", "low_quality", "no_new_information", "no_new_information (LLM judge)",
            "quality>=4"} <= audited
    assert any(nodes[n].status == "kept" for n, rs in reasons.items() if "audit:refusal" in rs)
    assert {nodes[n].language for n in reasons} == {"en", "ko"}

    refused = sorted(by_rule["refusal"])[0]
    before = sorted((s.metric, s.judge, s.value) for s in store.scores(node_id=refused))
    review.record_review(store, refused, "keep", reasons=["audit:refusal"], apply=True)
    assert sorted((s.metric, s.judge, s.value) for s in store.scores(node_id=refused)) == before
    assert store.get_node(refused).status == "kept"
    frame = review.agreement(store, [run_id]).set_index("check")
    assert frame.loc["refusal", "rule discard, person keep"] == 1 and frame.loc["refusal", "n"] == 1
    store.close()


# -- the command line ---------------------------------------------------------------------------------------
def test_cli_judge_prints_the_swap_counts_checked_answers_and_the_caveat(crafted, monkeypatch, capsys):
    from conftest import STUB_KEY, STUB_KEY_ENV

    from evolab.cli.main import main
    from evolab.testing.stub_server import StubServer

    store, run_id = crafted
    monkeypatch.setenv(STUB_KEY_ENV, STUB_KEY)
    with StubServer() as stub:
        store.update_run_config(run_id, RunConfig(model=MODEL, base_url=stub.base_url, api_key_env=STUB_KEY_ENV))
        assert main(["judge", "--db", store.path, "--run", run_id, "--rounds", "0,1"]) == 0
    out = capsys.readouterr().out
    rows = store.judgments(f"{run_id}:round0-vs-round1")
    swap = judge.position_swap_counts(rows)
    assert "1 pairs judged twice with the answers swapped" in out and len(rows) == 1
    assert (f"position swap: the same verdict in both orders for {swap['same']} of {swap['both_read']} pair(s), "
            f"changed by the order for {swap['flipped']}") in out
    assert "checked answers: none in these runs" in out
    assert "rates style more than truth" in out


def test_cli_agreement_prints_the_table_or_says_what_to_do(crafted, capsys):
    from evolab.cli.main import main

    store, run_id = crafted
    assert main(["agreement", "--db", store.path, "--run", run_id]) == 0
    assert "No audited reviews yet" in capsys.readouterr().out
    for i in range(10):
        review.record_review(store, f"kept{i:02d}", "keep" if i < 8 else "discard", reasons=["audit:refusal"])
    assert main(["agreement", "--db", store.path, "--run", run_id]) == 0
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if line.strip().startswith("refusal"))
    assert line.split()[:6] == ["refusal", "rule", "8", "10", "80%", "49%-94%"]
    assert main(["agreement", "--db", store.path, "--run", "nope"]) == 2
    assert "No run 'nope'" in capsys.readouterr().err
