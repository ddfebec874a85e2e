import asyncio
import json
import re

import pytest
from analysis_fixtures import SEEDS, build_run

from evolab.audit import judge
from evolab.audit.judge import LOSE, TIE, UNKNOWN, WIN, combine, parse_scores, summarize_judgments
from evolab.llm import FakeBackend, LLMClient, LLMError
from evolab.schema import Node


@pytest.mark.parametrize("first, second, outcome", [
    (WIN, WIN, WIN), (WIN, TIE, WIN), (TIE, WIN, WIN),
    (TIE, TIE, TIE), (WIN, LOSE, TIE), (LOSE, WIN, TIE),
    (LOSE, LOSE, LOSE), (LOSE, TIE, LOSE), (TIE, LOSE, LOSE),
])
def test_outcome_table(first, second, outcome):
    assert combine(first, second) == outcome


@pytest.mark.parametrize("first, second", [(None, WIN), (WIN, None), (None, None), ("maybe", TIE)])
def test_missing_verdict_is_unknown_never_a_tie(first, second):
    assert combine(first, second) == UNKNOWN


@pytest.mark.parametrize("reply, scores", [
    ("8 6\nAssistant 1 is better.", (8.0, 6.0)),
    ("\n  7.5, 7.5  \nsame", (7.5, 7.5)),
    ("Assistant 1: 9 Assistant 2: 4\n...", (9.0, 4.0)),
    ("**6** **8**", (6.0, 8.0)),
    ("8/10 5/10", (8.0, 5.0)),
    ("Both answers are fine.", None),
    ("8\n6", None),
    ("8 6 7", None),
    ("12 3", None),
    ("", None),
    (None, None),
])
def test_parse_scores(reply, scores):
    assert parse_scores(reply) == scores


def answer_of(messages, k):
    text = messages[-1]["content"]
    m = re.search(rf"\[The Start of Assistant {k}'s (?:Answer|Pair)\](.*?)\[The End of Assistant {k}", text, re.S)
    return m.group(1)


def quality_judge(messages, purpose):
    """Prefers the answer that says GOOD, whatever its position."""
    assert purpose == "judge"
    return "9 3\nthe first" if "GOOD" in answer_of(messages, 1) else "3 9\nthe second"


def node(nid, response, instruction="Explain tides."):
    return Node(id=nid, run_id="r", parent_id=None, root_id=nid, round=0, operation="seed",
                instruction=instruction, response=response, status="seed")


def item(a_resp, b_resp, a_instr="Explain tides.", b_instr="Explain tides."):
    return judge.Item(key="k", a=judge.Side("A", node("a", a_resp, a_instr)),
                      b=judge.Side("B", node("b", b_resp, b_instr)), seed_instruction="Explain tides.")


def run(coro):
    return asyncio.run(coro)


def test_asked_twice_with_answers_swapped():
    backend = FakeBackend(handler=quality_judge)
    client = LLMClient(backend)
    row = run(judge.judge_item(client, item("GOOD answer", "weak answer")))
    assert (row["first_verdict"], row["second_verdict"], row["outcome"]) == (WIN, WIN, WIN)
    first, second = (r["messages"] for r in backend.requests)
    assert "GOOD" in answer_of(first, 1) and "GOOD" in answer_of(second, 2)
    assert answer_of(first, 2) == answer_of(second, 1)
    assert all(r["temperature"] == 0.0 and r["purpose"] == "judge" for r in backend.requests)
    assert "[Question]\nExplain tides." in first[-1]["content"]  # same instruction: Vicuna's prompt
    row = run(judge.judge_item(LLMClient(FakeBackend(handler=quality_judge)), item("weak", "GOOD")))
    assert row["outcome"] == LOSE
    detail = json.loads(row["detail"])
    assert detail["scores_first"] == [3.0, 9.0] and detail["scores_second"] == [9.0, 3.0]


def test_position_bias_cancels_to_a_tie():
    row = run(judge.judge_item(LLMClient(FakeBackend(handler=lambda m, p: "8 6\nfirst is better")),
                               item("x", "y")))
    assert (row["first_verdict"], row["second_verdict"], row["outcome"]) == (WIN, LOSE, TIE)


def test_different_instructions_show_both_pairs():
    backend = FakeBackend(handler=quality_judge)
    run(judge.judge_item(LLMClient(backend), item("GOOD", "meh", b_instr="Explain tides to a child in 3 steps.")))
    text = backend.requests[0]["messages"][-1]["content"]
    assert "[Seed Instruction]\nExplain tides." in text and "Explain tides to a child in 3 steps." in text


def test_unparseable_reply_or_failed_call_is_unknown():
    # The first side is unreadable twice (the reply, then the stricter retry); the second reads "7 7".
    row = run(judge.judge_item(LLMClient(FakeBackend(replies=["Both are nice.", "Really, both.", "7 7"])),
                               item("x", "y")))
    assert row["first_verdict"] is None and row["second_verdict"] == TIE and row["outcome"] == UNKNOWN
    row = run(judge.judge_item(LLMClient(FakeBackend(replies=[LLMError("down"), "7 7"])), item("x", "y")))
    assert row["outcome"] == UNKNOWN and "down" in json.loads(row["detail"])["errors"][0]


def test_summarize_judgments():
    rows = [{"outcome": o} for o in [WIN, WIN, TIE, LOSE, UNKNOWN]]
    s = summarize_judgments(rows)
    assert (s["n"], s["win"], s["tie"], s["lose"], s["unknown"], s["decided"]) == (5, 2, 1, 1, 1, 4)
    assert s["win_rate"] == pytest.approx(0.4) and s["unknown_rate"] == pytest.approx(0.2)
    assert summarize_judgments([])["n"] == 0


def test_judge_rounds_picks_deterministically_and_stores(store):
    sample = build_run(store, rounds=2)
    client = LLMClient(FakeBackend(), store, run_id=sample.run_id)
    result = judge.judge_rounds_sync(store, client, sample.run_id, 0, 2)
    expected = {}
    for n in sorted(sample.nodes, key=lambda n: (n.created_at, n.id)):
        if n.round == 2 and n.status == "kept" and n.response:
            expected.setdefault(n.root_id, n.id)
    assert result["n"] == len(expected) > 0
    rows = store.judgments(result["comparison"])
    assert result["comparison"] == f"{sample.run_id}:round0-vs-round2"
    assert {r["item_key"]: r["node_b"] for r in rows} == expected
    assert all(r["node_a"] == r["item_key"] for r in rows)  # round 0 is the seed itself
    assert all(r["label_a"] == "round 0" and r["label_b"] == "round 2" and r["judge"] == "fake" for r in rows)
    assert all(r["outcome"] in (WIN, TIE, LOSE) for r in rows)  # the scripted judge always parses
    judge_calls = [c for c in store.calls(sample.run_id) if c.purpose == "judge" and c.request_hash]
    assert len(judge_calls) == 2 * len(expected)
    # again: same rows (replaced, not duplicated), answers from the request cache
    again = judge.judge_rounds_sync(store, client, sample.run_id, 0, 2)
    assert len(store.judgments(result["comparison"])) == len(expected)
    assert [r["outcome"] for r in again["rows"]] == [r["outcome"] for r in result["rows"]]
    assert client.calls_made == 2 * len(expected)


def test_judge_runs_matches_by_seed_instruction(store):
    a = build_run(store, rounds=2, name="a", response_prefix="Short")
    b = build_run(store, rounds=1, name="b", seeds=SEEDS[1:] + [SEEDS[0]], response_prefix="GOOD long answer")
    client = LLMClient(FakeBackend(handler=quality_judge), store)
    result = judge.judge_runs_sync(store, client, a.run_id, b.run_id)
    assert result["comparison"] == f"{a.run_id}-vs-{b.run_id}"
    rows = store.judgments(result["comparison"])
    assert len(rows) == result["n"] == 4
    nodes_a = {n.id: n for n in a.nodes}
    nodes_b = {n.id: n for n in b.nodes}
    for r in rows:
        na, nb = nodes_a[r["node_a"]], nodes_b[r["node_b"]]
        seed_a = nodes_a[na.root_id].instruction
        assert nodes_b[nb.root_id].instruction == seed_a
        deepest = max(n.round for n in a.nodes if n.root_id == na.root_id and n.status in ("seed", "kept"))
        assert na.round == deepest
        assert r["label_a"] == a.run_id and r["label_b"] == b.run_id
    assert result["lose"] == 4 and result["lose_rate"] == 1.0  # B's answers say GOOD
    only_round_1 = judge.judge_runs_sync(store, client, a.run_id, b.run_id, round=1)
    assert only_round_1["comparison"].endswith(":round1")
    assert all(nodes_a[r["node_a"]].round == 1 for r in only_round_1["rows"])


def test_sync_wrapper_inside_a_running_loop(store):
    sample = build_run(store, rounds=1)
    client = LLMClient(FakeBackend(), store)

    async def from_a_notebook_cell():
        return judge.judge_rounds_sync(store, client, sample.run_id, 0, 1)

    assert asyncio.run(from_a_notebook_cell())["n"] > 0


def test_judgments_frame(store):
    sample = build_run(store, rounds=1)
    result = judge.judge_rounds_sync(store, LLMClient(FakeBackend(), store), sample.run_id, 0, 1)
    df = judge.judgments_frame(store.judgments(result["comparison"]))
    assert len(df) == result["n"] and set(df["outcome"]) <= {WIN, TIE, LOSE}
