"""Reasoning models (OpenAI's o-series and gpt-5 families) against the stub answering as OpenAI does: the
parameters they take (max_completion_tokens, no temperature), learned from a 400 once per (endpoint, model)
and remembered; reasoning tokens in usage and cost; replies cut at max_tokens (`truncated`, `truncated_answer`)."""
from __future__ import annotations

import asyncio
import json

import pytest
from conftest import openai_backend_for

from evolab.app import support as app_support
from evolab.engine import eliminator, pipeline
from evolab.engine.eliminator import all_rule_ids
from evolab.llm import LLMClient, pricing
from evolab.llm.client import params_meta_key
from evolab.llm.openai_backend import (
    DEFAULT_SAMPLING,
    MAX_COMPLETION_TOKENS,
    known_quirks,
    quirks_from_error,
    sampling_params,
)
from evolab.schema import RunConfig, Seed
from evolab.testing.stub_server import StubServer

MSG = [{"role": "user", "content": "Explain photosynthesis in two sentences."}]
MAX_TOKENS_ERROR = ("Unsupported parameter: 'max_tokens' is not supported with this model. "
                    "Use 'max_completion_tokens' instead.")
TEMPERATURE_ERROR = ("Unsupported value: 'temperature' does not support 0.7 with this model. "
                     "Only the default (1) value is supported.")


def ask(client: LLMClient, **kw):
    kw.setdefault("purpose", "respond")
    kw.setdefault("max_tokens", 256)
    kw.setdefault("temperature", 0.7)

    async def go():
        try:
            return await client.complete(MSG, **kw)
        finally:
            await client.aclose()
    return asyncio.run(go())


def bodies(stub: StubServer) -> list[tuple[int, dict]]:
    return [(r["status"], r["body"]) for r in stub.chat_requests()]


# -- which models, which parameters -----------------------------------------------------------------------
@pytest.mark.parametrize("model", ["o1", "o1-mini", "o3", "o3-mini", "o3-pro", "o4-mini", "gpt-5", "gpt-5-mini",
                                   "gpt-5-nano", "o3-2025-04-16", "gpt-5-mini-2025-08-07", "openai/o4-mini",
                                   "openai/gpt-5-2025-08-07", "o3-mini-0131"])
def test_known_families_with_snapshots_and_provider_prefixes(model):
    assert known_quirks(model) == {MAX_COMPLETION_TOKENS, DEFAULT_SAMPLING}
    assert sampling_params(known_quirks(model), 0.7, 100) == {"max_completion_tokens": 100}


@pytest.mark.parametrize("model", ["gpt-4o", "gpt-4o-mini-2024-07-18", "o3-deep-research", "gpt-5-chat-latest",
                                   "o1-preview", "llama-o3", "smollm2"])
def test_other_models_keep_max_tokens_and_temperature(model):
    assert known_quirks(model) == set()
    assert sampling_params(set(), 0.7, 100) == {"max_tokens": 100, "temperature": 0.7}


def test_openai_error_texts_name_the_quirk():
    assert quirks_from_error(MAX_TOKENS_ERROR, "max_tokens") == {MAX_COMPLETION_TOKENS}
    assert quirks_from_error(TEMPERATURE_ERROR, "temperature") == {DEFAULT_SAMPLING}
    assert quirks_from_error("Unsupported value: 'top_p' does not support 0.9 with this model.") == {DEFAULT_SAMPLING}
    assert quirks_from_error("Invalid value for 'messages'.", "messages") == set()
    assert quirks_from_error("'max_completion_tokens' must be at least 1", "max_completion_tokens") == set()


def test_the_stub_answers_as_openai_does():
    import urllib.error
    import urllib.request

    def post(url: str, body: dict) -> tuple[int, dict]:
        req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    with StubServer(reasoning_models=("o3",), api_key=None) as stub:
        url = stub.base_url + "/chat/completions"
        status, data = post(url, {"model": "o3", "messages": MSG, "max_tokens": 50})
        assert status == 400 and data == {"error": {
            "message": MAX_TOKENS_ERROR, "type": "invalid_request_error", "param": "max_tokens",
            "code": "unsupported_parameter"}}
        status, data = post(url, {"model": "o3-2025-04-16", "messages": MSG, "max_completion_tokens": 50,
                                  "temperature": 0.7})
        assert status == 400 and data["error"] == {
            "message": TEMPERATURE_ERROR, "type": "invalid_request_error", "param": "temperature",
            "code": "unsupported_value"}
        status, data = post(url, {"model": "o3", "messages": MSG, "max_completion_tokens": 500, "temperature": 1})
        assert status == 200 and data["usage"]["completion_tokens_details"] == {"reasoning_tokens": 8}
        assert data["usage"]["completion_tokens"] > 8
        # Other models are served as before.
        status, data = post(url, {"model": "gpt-4o", "messages": MSG, "max_tokens": 50, "temperature": 0.7})
        assert status == 200 and "completion_tokens_details" not in data["usage"]


# -- a known family: right parameters at once, reasoning tokens counted and billed ----------------------------
def test_known_family_gets_max_completion_tokens_and_no_temperature(store):
    with StubServer(reasoning_models=("o3",)) as stub:
        run_id = store.create_run(RunConfig(model="o3"), [])
        comp = ask(LLMClient(openai_backend_for(stub, "o3"), store, run_id=run_id), max_tokens=300)
        ((status, body),) = bodies(stub)  # one request, accepted at once
        assert status == 200 and body["max_completion_tokens"] == 300
        assert "max_tokens" not in body and "temperature" not in body and "top_p" not in body
    assert comp.reasoning_tokens == 8 and comp.completion_tokens > 8
    price = pricing.resolve_price("o3")
    assert comp.cost_usd == pytest.approx(price.cost(comp.prompt_tokens, comp.completion_tokens))
    (call,) = store.calls(run_id)
    assert call.reasoning_tokens == 8 and call.completion_tokens == comp.completion_tokens
    summary = store.run_summary(run_id)
    assert summary["reasoning_tokens"] == 8 and summary["cost_usd"] == pytest.approx(comp.cost_usd)


# -- an unknown model: learned from the 400 once, remembered per (endpoint, model) ---------------------------
def test_unknown_reasoning_model_is_learned_from_the_400_and_remembered(store):
    with StubServer(reasoning_models=("acme-thinker",)) as stub:
        comp = ask(LLMClient(openai_backend_for(stub, "acme-thinker"), store), max_tokens=200)
        assert comp.text and comp.reasoning_tokens == 8
        sent = bodies(stub)
        # max_tokens -> 400, then temperature -> 400, then accepted: the same call, fixed, no LLMError
        assert [s for s, _ in sent] == [400, 400, 200]
        assert "max_tokens" in sent[0][1] and sent[1][1]["max_completion_tokens"] == 200 and "temperature" in sent[1][1]
        assert "temperature" not in sent[2][1] and "max_tokens" not in sent[2][1]
        known = json.loads(store.get_meta(params_meta_key(stub.base_url, "acme-thinker")))
        assert set(known["quirks"]) == {MAX_COMPLETION_TOKENS, DEFAULT_SAMPLING}
        assert store.calls()[0].error is None  # the learned 400s are not failed calls

        # A later client (a later run) on the same store sends the right parameters the first time.
        stub.reset()
        ask(LLMClient(openai_backend_for(stub, "acme-thinker"), store), max_tokens=100, purpose="evolve")
        ((status, body),) = bodies(stub)
        assert status == 200 and body["max_completion_tokens"] == 100 and "temperature" not in body

        # The same model name elsewhere is another model: nothing is assumed about it.
        with StubServer() as other:
            ask(LLMClient(openai_backend_for(other, "acme-thinker"), store), max_tokens=100)
            ((status, body),) = bodies(other)
            assert status == 200 and body["max_tokens"] == 100 and body["temperature"] == 0.7


def test_many_calls_in_flight_all_recover_from_the_first_400(store):
    """Calls sent before the quirk was learned each get the 400 and are sent again fixed, none fails."""
    with StubServer(reasoning_models=("acme-thinker",), latency=0.05) as stub:
        client = LLMClient(openai_backend_for(stub, "acme-thinker"), store, concurrency=8)

        async def go():
            try:
                return await asyncio.gather(*(client.complete([{"role": "user", "content": f"Q{i}?"}],
                                                              purpose="respond", max_tokens=100, temperature=0.5)
                                              for i in range(8)))
            finally:
                await client.aclose()
        comps = asyncio.run(go())
        assert all(c.text for c in comps)
        assert sum(1 for s, _ in bodies(stub) if s == 200) == 8
    assert not [c for c in store.calls() if c.error]


def test_a_400_that_names_no_quirk_is_an_error(store):
    from evolab.llm import LLMError

    with StubServer(reasoning_models=("o3",)) as stub:
        stub.inject(400)
        with pytest.raises(LLMError, match="400"):
            ask(LLMClient(openai_backend_for(stub, "gpt-4o-mini"), store))


def test_structured_probe_works_on_a_reasoning_model(store):
    """The probe asks with the model's parameters and room to think, so a reasoning model is not mistaken
    for one without structured output."""
    with StubServer(reasoning_models=("o3",)) as stub:
        client = LLMClient(openai_backend_for(stub, "o3"), store)

        async def go():
            try:
                return await client.structured_mode()
            finally:
                await client.aclose()
        assert asyncio.run(go()) == "json_schema"
        (status, body), = bodies(stub)
        assert status == 200 and "temperature" not in body and body["max_completion_tokens"] >= 256


# -- a run on a reasoning model ---------------------------------------------------------------------------------
def test_a_run_on_o3_makes_no_failed_call_and_counts_reasoning(store):
    with StubServer(reasoning_models=("o3",)) as stub:
        config = RunConfig(model="o3", base_url=stub.base_url, rounds=1, concurrency=4)
        run_id = pipeline.create_run(store, [Seed("Explain why the sky is blue."), Seed("Write a haiku.")], config)
        assert pipeline.run_sync(store, run_id, backend=openai_backend_for(stub, "o3")) == "finished"
        assert all(s == 200 for s, _ in bodies(stub))
        assert all("temperature" not in b and "max_tokens" not in b for _, b in bodies(stub))
    calls = store.calls(run_id)
    assert calls and not [c for c in calls if c.error] and all(c.reasoning_tokens == 8 for c in calls)
    assert store.run_summary(run_id)["reasoning_tokens"] == 8 * len(calls)


# -- replies cut at max_tokens ------------------------------------------------------------------------------------
def test_truncated_is_a_rule_and_comes_first():
    assert "truncated" in all_rule_ids()
    assert eliminator.CASCADE[0].id == "truncated" and eliminator.CASCADE[0].needs == eliminator.INSTRUCTION


def test_an_evolution_cut_at_max_tokens_is_eliminated_as_truncated(stub, store):
    config = RunConfig(model="gpt-4o-mini", base_url=stub.base_url, rounds=1, max_tokens_evolve=6)
    run_id = pipeline.create_run(store, [Seed("Explain why the sky is blue to a curious child.")], config)
    pipeline.run_sync(store, run_id, backend=openai_backend_for(stub))
    (child,) = [n for n in store.nodes(run_id) if n.round == 1]
    assert child.status == "eliminated" and child.rule == "truncated" and "max_tokens" in child.detail
    assert child.response is None
    # the first check: nothing after it ran, and no answer or judge call was made for it
    verdicts = [s for s in store.scores(node_id=child.id) if s.metric.startswith("rule:")]
    assert [(s.metric, s.value) for s in verdicts] == [("rule:truncated", 0.0)]
    assert {c.purpose for c in store.calls(run_id) if c.node_id == child.id} == {"evolve"}
    assert store.run_summary(run_id)["by_rule"] == {"truncated": 1}


def test_a_reply_cut_in_a_trailing_note_keeps_its_whole_instruction(store):
    from evolab.llm import scripted_reply
    from evolab.testing.stub_server import StubServer

    def handler(messages, purpose):
        if purpose == "evolve":
            return ("#Rewritten Prompt#:\nExplain why the sky is blue, with one experiment a child can do at home.\n\n"
                    "Explanation: I added a concrete experiment so that the answer must go beyond a definition and "
                    "describe materials, steps and what the child should observe along the way")
        return scripted_reply(messages, purpose)

    with StubServer(handler=handler) as stub:
        config = RunConfig(model="gpt-4o-mini", base_url=stub.base_url, rounds=1, max_tokens_evolve=40)
        run_id = pipeline.create_run(store, [Seed("Explain why the sky is blue.")], config)
        pipeline.run_sync(store, run_id, backend=openai_backend_for(stub))
    (child,) = [n for n in store.nodes(run_id) if n.round == 1]
    assert child.instruction == "Explain why the sky is blue, with one experiment a child can do at home."
    (v,) = [s for s in store.scores(node_id=child.id) if s.metric == "rule:truncated"]
    assert v.value == 1.0 and "after the instruction ended" in v.detail


def test_a_whole_evolution_passes_the_truncated_rule(stub, store):
    config = RunConfig(model="gpt-4o-mini", base_url=stub.base_url, rounds=1)
    run_id = pipeline.create_run(store, [Seed("Explain why the sky is blue.")], config)
    pipeline.run_sync(store, run_id, backend=openai_backend_for(stub))
    (child,) = [n for n in store.nodes(run_id) if n.round == 1]
    assert child.status == "kept"
    (v,) = [s for s in store.scores(node_id=child.id) if s.metric == "rule:truncated"]
    assert v.value == 1.0
    assert not [s for s in store.scores(run_id) if s.metric == "truncated_answer"]


def test_a_truncated_answer_is_flagged_and_shown(stub, store):
    config = RunConfig(model="gpt-4o-mini", base_url=stub.base_url, rounds=1, max_tokens_respond=20)
    run_id = pipeline.create_run(store, [Seed("Explain why the sky is blue.")], config)
    pipeline.run_sync(store, run_id, backend=openai_backend_for(stub))
    flags = {s.node_id: s for s in store.scores(run_id) if s.metric == "truncated_answer"}
    nodes = store.nodes(run_id)
    assert set(flags) == {n.id for n in nodes if n.response}  # the seed's answer and the child's
    assert all(f.value == 1.0 and "max_tokens" in f.detail for f in flags.values())
    child = next(n for n in nodes if n.round == 1)
    detail = app_support.node_detail(store, child.id)
    assert detail.scores.iloc[0]["metric"] == "truncated_answer" and detail.scores.iloc[0]["value"] == 1.0
    assert "reasoning tokens" in detail.calls.columns


def test_rule_off_truncated_keeps_a_cut_evolution_going(stub, store):
    from evolab.cli.main import build_parser
    from evolab.cli.runs import config_from_args

    args = build_parser().parse_args(["run", "seeds.jsonl", "--rule-off", "truncated"])
    cfg = config_from_args(args)
    assert "truncated" in cfg.rules.off and not eliminator.CASCADE[0].enabled(cfg)
