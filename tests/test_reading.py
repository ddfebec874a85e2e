"""Structured output first, free text second, one stricter retry, never a guessed verdict: the probe per
(endpoint, model) and its memory in the store, `--structured auto|on|off`, the scorers and judges over it."""
from __future__ import annotations

import asyncio
import json

import pytest
from conftest import openai_backend_for

from evolab.audit.judge import Item, Side, judge_item
from evolab.engine import eliminator, pipeline, scoring
from evolab.llm import FakeBackend, LLMClient, LLMError
from evolab.llm.base import response_format
from evolab.llm.client import structured_meta_key
from evolab.schema import Node, RunConfig, Seed
from evolab.testing.stub_server import StubServer
from evolab.text import reading


def run(coro):
    return asyncio.run(coro)


# -- the probe ---------------------------------------------------------------------------------------------
def test_probe_finds_openai_json_schema_and_the_store_remembers_it(stub, store):
    client = LLMClient(openai_backend_for(stub), store)
    assert run(client.structured_mode()) == "json_schema"
    probes = stub.chat_requests("probe")
    assert len(probes) == 1 and probes[0]["body"]["response_format"]["type"] == "json_schema"
    saved = json.loads(store.get_meta(structured_meta_key(stub.base_url, "gpt-4o-mini")))
    assert saved["mode"] == "json_schema"
    # A second client on the same store asks nobody.
    again = LLMClient(openai_backend_for(stub), store)
    assert run(again.structured_mode()) == "json_schema"
    assert len(stub.chat_requests("probe")) == 1
    assert [c.purpose for c in store.calls()] == ["probe"]  # the probe's call is stored like any other


def test_probe_falls_back_to_json_object_like_the_embedded_server(store):
    # llama-cpp-python's server answers json_schema with a 500 and takes json_object with a schema.
    with StubServer(structured=("json_object",), structured_error=500) as stub:
        client = LLMClient(openai_backend_for(stub), store)
        assert run(client.structured_mode()) == "json_object"
        kinds = [r["body"]["response_format"]["type"] for r in stub.chat_requests("probe")]
        assert kinds == ["json_schema", "json_object"]  # each form tried once, no retries of the 500


def test_probe_says_none_when_the_endpoint_has_no_structured_output(store):
    with StubServer(structured=()) as stub:
        client = LLMClient(openai_backend_for(stub), store)
        assert run(client.structured_mode()) == "none"
        assert json.loads(store.get_meta(structured_meta_key(stub.base_url, "gpt-4o-mini")))["mode"] == "none"


def test_probe_counts_an_endpoint_that_accepts_the_field_but_ignores_it_as_none(store):
    with StubServer(handler=lambda m, p: "Sure! The answer is 5.") as stub:
        stub_handler_ignores_format = stub  # the handler answers text whatever response_format says
        client = LLMClient(openai_backend_for(stub_handler_ignores_format), store)
        assert run(client.structured_mode()) == "none"


def test_probe_remembers_nothing_when_the_endpoint_cannot_be_asked(store):
    with StubServer() as stub:
        stub.fail_always = 429
        client = LLMClient(openai_backend_for(stub), store)
        assert run(client.structured_mode()) == "none"  # free text for now
        assert store.get_meta(structured_meta_key(stub.base_url, "gpt-4o-mini")) is None  # ask again next time


def test_structured_off_never_probes_and_on_fails_loudly(store):
    with StubServer(structured=()) as stub:
        off = LLMClient(openai_backend_for(stub), store, structured="off")
        assert run(off.structured_mode()) == "none" and stub.count() == 0
        on = LLMClient(openai_backend_for(stub), store, structured="on")
        with pytest.raises(LLMError, match="--structured auto"):
            run(on.structured_mode())


def test_the_probe_is_per_endpoint_and_model(store):
    with StubServer() as a, StubServer(structured=()) as b:
        assert run(LLMClient(openai_backend_for(a), store).structured_mode()) == "json_schema"
        assert run(LLMClient(openai_backend_for(b), store).structured_mode()) == "none"
        assert run(LLMClient(openai_backend_for(a, model="other"), store).structured_mode()) == "json_schema"
        assert len(a.chat_requests("probe")) == 2  # one per model


def test_openai_strict_schema_leaves_out_bounds_grammar_servers_keep_them():
    schema = reading.QUALITY.schema
    strict = response_format("json_schema", "quality", schema)
    assert strict["json_schema"]["strict"] is True
    assert "maxLength" not in json.dumps(strict)
    grammar = response_format("json_object", "quality", schema)
    assert grammar == {"type": "json_object", "schema": schema} and "maxLength" in json.dumps(grammar)
    assert response_format("none", "quality", schema) is None


# -- reading one reply --------------------------------------------------------------------------------------
def ask_with(replies: list[str], kind, structured_mode="json_schema", language="en"):
    backend = FakeBackend(replies=list(replies), structured_mode=structured_mode)
    client = LLMClient(backend)
    result = run(reading.ask(client, [{"role": "user", "content": "Q"}], kind, purpose=kind.name,
                             language=language))
    return result, backend


def test_json_reply_is_read_and_the_reason_kept():
    result, backend = ask_with(['{"reason": "Correct and complete.", "score": 4.5}'], reading.QUALITY)
    assert (result.value, result.how, result.reason) == (4.5, reading.JSON, "Correct and complete.")
    assert backend.requests[0]["response_format"]["type"] == "json_schema"
    assert len(backend.requests) == 1


def test_json_out_of_range_is_not_clamped_and_is_retried():
    result, backend = ask_with(['{"reason": "x", "score": 7}', '{"reason": "x", "score": 4}'], reading.QUALITY)
    assert (result.value, result.how) == (4, reading.RETRY)
    retry = backend.requests[1]["messages"]
    assert retry[-2]["role"] == "assistant" and "0 to 5" in retry[-1]["content"]


def test_free_text_when_the_endpoint_has_no_structured_output():
    result, backend = ask_with(["Accuracy (0-5): 4"], reading.QUALITY, structured_mode="none")
    assert (result.value, result.how) == (4, reading.TEXT)
    assert backend.requests[0]["response_format"] is None


def test_an_unreadable_reply_is_asked_once_more_then_marked_unreadable():
    result, backend = ask_with(["It depends on the context.", "Hard to say."], reading.DIFFICULTY,
                               structured_mode="none")
    assert result.value is None and result.how == reading.UNREADABLE and not result.readable
    assert len(backend.requests) == 2
    assert "unreadable" in result.describe()


def test_the_stricter_retry_speaks_korean_to_korean_prompts():
    result, backend = ask_with(["잘 모르겠습니다.", "7"], reading.DIFFICULTY, structured_mode="none", language="ko")
    assert result.value == 7
    assert "1부터 10" in backend.requests[1]["messages"][-1]["content"]


# -- scorers and judges ---------------------------------------------------------------------------------------
def test_unreadable_scores_are_stored_as_missing_never_zero():
    client = LLMClient(FakeBackend(replies=["no idea", "still no idea"]))
    score = run(scoring.score_difficulty(client, "Explain NPV.", node_id="n1"))
    assert score.value is None and "unreadable" in score.detail


def test_judges_use_the_configured_judge_temperature():
    backend = FakeBackend()
    client = LLMClient(backend)
    run(scoring.score_quality(client, "Q", "", "A", node_id="n", temperature=0.3))
    run(eliminator.judge_equal(client, "A", "B", temperature=0.3))
    assert [r["temperature"] for r in backend.requests] == [0.3, 0.3]


def test_equality_judge_sees_both_inputs():
    backend = FakeBackend(replies=["Not Equal"])
    run(eliminator.judge_equal(LLMClient(backend), "Summarise the table.", "Summarise the table.",
                               parent_input="| a | 1 |", child_input='{"a": 1, "b": 2}'))
    prompt = backend.requests[0]["messages"][0]["content"]
    assert "| a | 1 |" in prompt and '{"a": 1, "b": 2}' in prompt


def test_an_unreadable_equality_verdict_is_neither_equal_nor_not_equal():
    v = run(eliminator.judge_equal(LLMClient(FakeBackend(replies=["Hmm.", "Let me think."])), "A", "B"))
    assert v.unreadable and not v.passed


def test_pairwise_judge_reads_structured_scores_on_both_sides():
    backend = FakeBackend(replies=['{"reason": "A is better.", "assistant_1": 8, "assistant_2": 5}',
                                   '{"reason": "B is worse.", "assistant_1": 4, "assistant_2": 9}'],
                          structured_mode="json_schema")
    a = Node("a", "r", None, "a", 0, "seed", "Q", response="good")
    b = Node("b", "r", None, "b", 0, "seed", "Q", response="bad")
    row = run(judge_item(LLMClient(backend), Item("k", Side("A", a), Side("B", b), "Q")))
    assert (row["first_verdict"], row["second_verdict"], row["outcome"]) == ("win", "win", "win")
    assert all(r["response_format"]["type"] == "json_schema" for r in backend.requests)


def test_pairwise_judge_unreadable_side_makes_the_outcome_unknown():
    backend = FakeBackend(replies=["8 5", "I prefer neither.", "Both are fine."])
    a = Node("a", "r", None, "a", 0, "seed", "Q", response="x")
    b = Node("b", "r", None, "b", 0, "seed", "Q", response="y")
    row = run(judge_item(LLMClient(backend), Item("k", Side("A", a), Side("B", b), "Q")))
    assert row["outcome"] == "unknown"


# -- a whole run ------------------------------------------------------------------------------------------------
SEEDS = [Seed("Explain why the sky is blue."), Seed("환율 위험을 줄이는 방법을 설명해 주세요.")]


def test_a_run_on_a_structured_endpoint_sends_schemas_and_stores_readable_scores(stub, store):
    config = RunConfig(model="gpt-4o-mini", base_url=stub.base_url, rounds=1, concurrency=4)
    run_id = pipeline.create_run(store, SEEDS, config)
    assert pipeline.run_sync(store, run_id, backend=openai_backend_for(stub)) == "finished"
    for purpose in ("equal", "difficulty", "quality"):
        reqs = stub.chat_requests(purpose)
        assert reqs and all(r["body"]["response_format"]["type"] == "json_schema" for r in reqs), purpose
    assert not any("response_format" in r["body"] for r in stub.chat_requests("evolve") + stub.chat_requests("respond"))
    scores = [s for s in store.scores(run_id) if s.metric in ("difficulty", "quality")]
    assert scores and all(s.value is not None and s.detail.startswith("[json]") for s in scores)


def test_a_run_with_structured_off_reads_free_text(stub, store):
    config = RunConfig(model="gpt-4o-mini", base_url=stub.base_url, rounds=1, concurrency=4, structured="off")
    run_id = pipeline.create_run(store, SEEDS, config)
    pipeline.run_sync(store, run_id, backend=openai_backend_for(stub))
    assert not any("response_format" in r["body"] for r in stub.chat_requests())
    scores = [s for s in store.scores(run_id) if s.metric in ("difficulty", "quality")]
    assert scores and all(s.value is not None and s.detail.startswith("[text]") for s in scores)


def test_an_unreadable_equality_verdict_fails_the_step_as_unreadable(store):
    def handler(messages, purpose):
        if purpose == "equal":
            return "Well, that depends on how you look at it."
        from evolab.llm import scripted_reply
        return scripted_reply(messages, purpose)

    with StubServer(handler=handler, structured=()) as stub:
        config = RunConfig(model="gpt-4o-mini", base_url=stub.base_url, rounds=2, concurrency=4)
        run_id = pipeline.create_run(store, SEEDS, config)
        pipeline.run_sync(store, run_id, backend=openai_backend_for(stub))
    children = [n for n in store.nodes(run_id) if n.round]
    assert children and all(n.status == "failed" and n.rule == "unreadable" for n in children)
    assert all("unreadable" in n.detail for n in children)
    # Every child was asked twice (the stricter retry), and the seed stays in the pool: round 2 evolves it again.
    assert sum(c.purpose == "equal" for c in store.calls(run_id)) == 2 * len(children)  # some from the cache
    assert {n.parent_id for n in children if n.round == 2} == {n.id for n in store.nodes(run_id) if n.round == 0}
    verdict = next(s for s in store.scores(run_id) if s.metric == "rule:no_new_information" and s.value is None)
    assert "unreadable" in verdict.detail
