"""Scorers: difficulty 1-10 (WizardLM), quality 0-5 (AlpaGasus), scores parsed from anywhere in the
reply, unparseable replies stored as missing (None), never 0."""
from __future__ import annotations

import asyncio
import math

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from evolab.engine import pipeline
from evolab.engine.scoring import parse_score, score_difficulty, score_quality
from evolab.llm import FakeBackend, LLMClient, LLMError, scripted_reply
from evolab.schema import RuleConfig, RunConfig, Seed


@pytest.mark.parametrize("text, low, high, expected", [
    ("7", 1, 10, 7),
    ("Difficulty: 7", 1, 10, 7),
    ("Score: **8**", 1, 10, 8),
    ("Rating = 6", 1, 10, 6),
    ("I would rate this 7.", 1, 10, 7),
    ("The difficulty of this question is 7.", 1, 10, 7),
    ("7/10 - fairly hard", 1, 10, 7),
    ("I'd say 6 out of 10.", 1, 10, 6),
    ("This is a moderately complex question.\n\n## Score:\n5", 1, 10, 5),
    ("(8)", 1, 10, 8),
    ("난이도: 9", 1, 10, 9),
    ("8점입니다.", 1, 10, 8),
    ("난이도는 8입니다.", 1, 10, 8),
    ("10점 만점에 6점", 1, 10, 6),
    ("5점 중 4점", 0, 5, 4),
    ("4.5", 0, 5, 4.5),
    ("Score: 4.5/5\nThe answer is accurate.", 0, 5, 4.5),
    ("I rate the accuracy 3 out of 5 because it misses a step.", 0, 5, 3),
    ("0\nThe response is wrong.", 0, 5, 0),
    ("점수: 4점\n정확합니다.", 0, 5, 4),
    ("Score: 7 out of 10, so 3.5 on your scale", 0, 5, 3.5),  # out-of-range numbers are skipped
])
def test_score_found_anywhere_in_the_reply(text, low, high, expected):
    assert parse_score(text, low, high) == expected


@pytest.mark.parametrize("text, low, high", [
    ("", 1, 10), ("I cannot rate this question.", 1, 10), ("Score: 11", 1, 10), ("0", 1, 10),
    ("Score: 12.5", 1, 10), ("version v2 of GPT-4o", 1, 10), ("7", 0, 5), ("Score: N/A", 0, 5),
    (None, 0, 5),
])
def test_no_score_in_range_is_none(text, low, high):
    assert parse_score(text, low, high) is None


@settings(max_examples=500, deadline=None)
@given(text=st.one_of(st.text(), st.lists(st.one_of(st.sampled_from(
    ["Score:", "score", "/", "out of", "10", "4.5", "5.", "점", "난이도", " ", "\n", "**", "-", "1e9", "99999",
     "٣", "０", "7", ".", "0.0"]), st.text(max_size=5))).map("".join)),
       bounds=st.sampled_from([(1, 10), (0, 5)]))
@example(text="9" * 400, bounds=(1, 10))
@example(text="1" + "0" * 400 + ".5", bounds=(0, 5))
def test_parse_score_never_raises_and_stays_in_range(text, bounds):
    low, high = bounds
    value = parse_score(text, low, high)
    assert value is None or (isinstance(value, float) and not math.isnan(value) and low <= value <= high)


# -- the scorers -----------------------------------------------------------------------------------------
def test_difficulty_scorer_sends_the_papers_question_and_stores_the_value():
    backend = FakeBackend(replies=["Difficulty: 8"])
    score = asyncio.run(score_difficulty(LLMClient(backend), "Prove Fermat's little theorem.", node_id="n1"))
    assert (score.node_id, score.metric, score.value, score.judge) == ("n1", "difficulty", 8.0, "fake")
    prompt = backend.requests[0]["messages"][0]["content"]
    assert "Prove Fermat's little theorem." in prompt and "1 to 10" in prompt
    assert backend.requests[0]["purpose"] == "difficulty" and backend.requests[0]["temperature"] == 0.0


def test_quality_scorer_is_alpagasus_0_to_5_with_instruction_input_and_response():
    backend = FakeBackend(replies=["4.5\nAccurate and complete."])
    score = asyncio.run(score_quality(LLMClient(backend), "Sum the numbers.", "1, 2, 3", "6", node_id="n2"))
    assert (score.metric, score.value) == ("quality", 4.5)
    prompt = backend.requests[0]["messages"][0]["content"]
    assert "Instruction: Sum the numbers." in prompt and "Input: 1, 2, 3" in prompt and "Response: 6" in prompt
    assert "0 to 5" in prompt and "accuracy" in prompt


def test_korean_scorer_prompts():
    backend = FakeBackend(replies=["난이도는 7입니다.", "점수: 3점"])
    client = LLMClient(backend)
    d = asyncio.run(score_difficulty(client, "피보나치 수열을 설명하세요.", language="ko", node_id="k"))
    q = asyncio.run(score_quality(client, "피보나치 수열을 설명하세요.", "", "수열입니다.", language="ko", node_id="k"))
    assert (d.value, q.value) == (7.0, 3.0)
    assert "1점에서 10점" in backend.requests[0]["messages"][0]["content"]
    assert "0점에서 5점" in backend.requests[1]["messages"][0]["content"]


@pytest.mark.parametrize("reply", ["I cannot judge this.", "Score: twelve", "", "Score: 42"])
def test_unparseable_reply_is_missing_never_zero(reply):
    # Asked twice (the second time with a stricter instruction), unreadable both times.
    score = asyncio.run(score_quality(LLMClient(FakeBackend(replies=[reply, reply])), "Q", "", "A", node_id="n"))
    assert score.value is None
    assert "unreadable" in score.detail


def test_a_failed_scorer_call_is_missing_too():
    score = asyncio.run(score_difficulty(LLMClient(FakeBackend(replies=[LLMError("HTTP 500")])), "Q", node_id="n"))
    assert score.value is None and "HTTP 500" in score.detail


# -- in a run ------------------------------------------------------------------------------------------------
def _run(store, handler, **cfg):
    config = RunConfig(model="fake", rounds=1, **cfg)
    run_id = pipeline.create_run(store, [Seed("Explain how vaccines train the immune system.")], config)
    status = pipeline.run_sync(store, run_id, backend=FakeBackend(handler=handler))
    return run_id, status


def test_run_stores_difficulty_and_quality_and_missing_as_none(store):
    def handler(messages, purpose):
        if purpose == "difficulty":
            return "It is hard to say."  # unparseable
        if purpose == "quality":
            return "Score: 4\nGood."
        return scripted_reply(messages, purpose)

    run_id, status = _run(store, handler)
    assert status == "finished"
    rows = {(s.node_id, s.metric): s for s in store.scores(run_id)}
    for node in store.nodes(run_id):
        assert rows[(node.id, "difficulty")].value is None  # stored as missing, not 0
        assert "unreadable" in rows[(node.id, "difficulty")].detail
        assert rows[(node.id, "quality")].value == 4.0
        assert rows[(node.id, "quality")].judge == "fake"
    raw = store.query("SELECT COUNT(*) FROM scores WHERE metric='difficulty' AND value IS NULL")[0][0]
    assert raw == 2  # the seed and its child


def test_quality_filter_is_off_by_default_and_drops_under_4_5_when_on(store):
    assert RunConfig().rules.quality_filter is False and RunConfig().rules.quality_min == 4.5

    def handler(messages, purpose):
        return "Score: 4\nMostly right." if purpose == "quality" else scripted_reply(messages, purpose)

    run_id, _ = _run(store, handler)
    (child,) = [n for n in store.nodes(run_id) if n.round == 1]
    assert child.status == "kept"

    run_id, _ = _run(store, handler, rules=RuleConfig(quality_filter=True))
    (child,) = [n for n in store.nodes(run_id) if n.round == 1]
    assert (child.status, child.rule) == ("eliminated", "low_quality")
    assert "4 < 4.5" in child.detail
