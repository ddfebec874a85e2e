"""The LLM client over real HTTP: the real `openai` client against the stub server.

Retries, errors, the cache, usage and cost, the budget, key handling and the concurrency limit, as a
user of `LLMClient` would check them.
"""
from __future__ import annotations

import asyncio
import math
import socket
import threading
import time
import uuid

import pytest
from conftest import AllInFlight, openai_backend_for

from evolab.llm import BudgetExceeded, LLMClient, LLMError, OpenAICompatibleBackend, pricing, scripted_reply
from evolab.schema import RunConfig, Seed
from evolab.testing.stub_server import StubServer, count_tokens, embedding_vector

MSG = [{"role": "system", "content": "You are a helpful assistant."},
       {"role": "user", "content": "Explain photosynthesis in two sentences."}]


def run(coro):
    return asyncio.run(coro)


def ask(client: LLMClient, messages=MSG, *, close: bool = True, **kw):
    """One completion through the client, in its own event loop."""
    kw.setdefault("purpose", "respond")
    kw.setdefault("max_tokens", 256)

    async def go():
        try:
            return await client.complete(messages, **kw)
        finally:
            if close:
                await client.aclose()
    return run(go())


def chat_usages(stub: StubServer) -> list[dict]:
    return [r["usage"] for r in stub.chat_requests() if r["usage"] is not None]


# -- a plain completion --------------------------------------------------------------------------------
def test_plain_completion_returns_text_model_usage_latency(store):
    with StubServer(latency=0.1) as stub:
        client = LLMClient(openai_backend_for(stub), store)
        comp = ask(client, purpose="respond", temperature=0.3, max_tokens=300)

        assert comp.text == scripted_reply(MSG, "respond")
        assert comp.model == "gpt-4o-mini"
        assert not comp.cached
        assert comp.latency_s >= 0.1
        reported = chat_usages(stub)
        assert len(reported) == 1
        assert comp.prompt_tokens == reported[0]["prompt_tokens"] > 0
        assert comp.completion_tokens == reported[0]["completion_tokens"] == count_tokens(comp.text)

        # What went over the wire: the request as asked, with the purpose header.
        (req,) = stub.chat_requests()
        assert req["purpose"] == "respond"
        assert req["body"]["model"] == "gpt-4o-mini"
        assert req["body"]["messages"] == MSG
        assert req["body"]["temperature"] == 0.3
        assert req["body"]["max_tokens"] == 300

    (call,) = store.calls()
    assert (call.purpose, call.model, call.error, call.cached) == ("respond", "gpt-4o-mini", None, False)
    assert (call.prompt_tokens, call.completion_tokens) == (comp.prompt_tokens, comp.completion_tokens)
    assert call.latency_s == pytest.approx(comp.latency_s)
    assert call.request_hash == comp.request_hash


def test_max_tokens_caps_the_reply(stub, store):
    comp = ask(LLMClient(openai_backend_for(stub), store), purpose="respond", max_tokens=5)
    assert comp.completion_tokens == 5
    assert count_tokens(comp.text) == 5


# -- retries -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("faults", [
    [429, 429],
    [500, 503],
    ["timeout"],
    ["malformed"],
    ["no_choices"],
    ["disconnect"],
    [429, "malformed", 503],
], ids=lambda f: "+".join(map(str, f)))
def test_retries_recover_from_transient_faults(stub, store, faults):
    stub.timeout_sleep = 60.0  # a reply that would come far later than the client's 1 s timeout
    stub.inject(*faults)
    client = LLMClient(openai_backend_for(stub, timeout_s=1.0, max_retries=3), store)
    comp = ask(client, purpose="evolve")

    assert comp.text == scripted_reply(MSG, "evolve")
    assert stub.count() == len(faults) + 1  # every fault cost one request, then the good one
    assert stub.count("evolve") == len(faults) + 1
    if "timeout" in faults:  # the client gave up at its own timeout: the slow reply is still unanswered
        assert stub.chat_requests()[faults.index("timeout")]["status"] is None
    (call,) = store.calls()  # one logical call, one row
    assert call.error is None and call.completion_tokens == comp.completion_tokens > 0


@pytest.mark.parametrize("fault, max_retries, requests, words", [
    (500, 2, 3, "HTTP 500 after all retries"),
    (503, 1, 2, "HTTP 503 after all retries"),
    (429, 2, 3, "Rate limited (429)"),
    ("timeout", 0, 1, "did not answer in time"),
    ("malformed", 2, 3, "could not read"),
    ("no_choices", 1, 2, "no message content"),
    (401, 3, 1, "rejected the key"),  # not retried: retrying cannot fix a key
    (404, 3, 1, "does not know model"),
])
def test_permanent_failure_raises_readable_error_and_is_stored(stub, store, fault, max_retries, requests, words):
    stub.fail_always = fault
    client = LLMClient(openai_backend_for(stub, max_retries=max_retries), store)
    with pytest.raises(LLMError) as info:
        ask(client, purpose="judge")
    message = str(info.value)
    assert words in message
    assert "Traceback" not in message and len(message) < 600
    assert stub.count("judge") == requests

    (call,) = store.calls()
    assert call.purpose == "judge"
    assert call.error == message
    assert (call.prompt_tokens, call.completion_tokens, call.cost_usd, call.cached) == (0, 0, 0.0, False)

    # A failure is not cached: once the endpoint recovers, the same request is sent again and works.
    stub.fail_always = None
    comp = ask(LLMClient(openai_backend_for(stub), store), purpose="judge")
    assert comp.text == scripted_reply(MSG, "judge") and not comp.cached
    assert stub.count("judge") == requests + 1


def test_storm_then_recovery_with_error_rate(stub, store):
    """A 30 % rate of 429s over 40 calls: every call still succeeds thanks to the retries."""
    stub.error_rate, stub.error_status = 0.3, 429
    client = LLMClient(openai_backend_for(stub, max_retries=6), store, concurrency=8)

    async def go():
        try:
            return await asyncio.gather(*[
                client.complete([{"role": "user", "content": f"Question {i}?"}], purpose="respond", max_tokens=64)
                for i in range(40)])
        finally:
            await client.aclose()
    comps = run(go())
    statuses = [r["status"] for r in stub.chat_requests()]
    assert all(c.text for c in comps)
    assert statuses.count(200) == 40
    assert statuses.count(429) >= 5  # the faults did happen, and were retried
    assert len(statuses) == 40 + statuses.count(429)
    assert all(c.error is None for c in store.calls())


def test_dead_endpoint_says_it_cannot_reach_it(store):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    backend = OpenAICompatibleBackend(model="gpt-4o-mini", base_url=url, api_key_env=None,
                                      timeout_s=1.0, max_retries=1)
    with pytest.raises(LLMError) as info:
        ask(LLMClient(backend, store))
    assert "Cannot reach" in str(info.value) and url in str(info.value)
    (call,) = store.calls()
    assert "Cannot reach" in call.error


# -- the cache -----------------------------------------------------------------------------------------
def test_identical_request_is_answered_from_the_cache(stub, store):
    client = LLMClient(openai_backend_for(stub), store)

    async def go():
        try:
            first = await client.complete(MSG, purpose="respond", temperature=0.7, max_tokens=128)
            again = await client.complete(MSG, purpose="respond", temperature=0.7, max_tokens=128)
            assert stub.count() == 1  # no second HTTP request
            salted = await client.complete(MSG, purpose="respond", temperature=0.7, max_tokens=128, salt="round-2")
            assert stub.count() == 2
            hotter = await client.complete(MSG, purpose="respond", temperature=0.9, max_tokens=128)
            assert stub.count() == 3
            longer = await client.complete(MSG, purpose="respond", temperature=0.7, max_tokens=256)
            assert stub.count() == 4
            return first, again, salted, hotter, longer
        finally:
            await client.aclose()
    first, again, salted, hotter, longer = run(go())

    assert again.cached and not first.cached
    assert again.text == first.text
    assert (again.prompt_tokens, again.completion_tokens) == (first.prompt_tokens, first.completion_tokens)
    assert not any(c.cached for c in (salted, hotter, longer))
    assert client.calls_made == 4

    calls = store.calls()
    assert [c.cached for c in calls] == [False, True, False, False, False]
    assert calls[0].cost_usd > 0 and calls[1].cost_usd == 0.0  # a cached answer costs nothing

    # A new client on the same store (a resumed run) gets the cached answer too.
    resumed = ask(LLMClient(openai_backend_for(stub), store), purpose="respond", temperature=0.7, max_tokens=128)
    assert resumed.cached and resumed.text == first.text
    assert stub.count() == 4

    # use_cache=False always asks.
    ask(LLMClient(openai_backend_for(stub), store, use_cache=False), purpose="respond", temperature=0.7,
        max_tokens=128)
    assert stub.count() == 5


# -- usage and cost ------------------------------------------------------------------------------------
def test_usage_and_cost_add_up(stub, store):
    run_id = store.create_run(RunConfig(model="gpt-4o-mini", base_url=stub.base_url), [Seed("Say hi.")])
    client = LLMClient(openai_backend_for(stub, "gpt-4o-mini"), store, run_id=run_id)
    purposes = ["evolve", "respond", "equal", "difficulty", "quality", "judge"]

    async def go():
        try:
            out = []
            for i, purpose in enumerate(purposes):
                out.append(await client.complete(
                    [{"role": "user", "content": f"#Given Prompt#: Write a poem about {i} cats. #Rewritten Prompt#"}],
                    purpose=purpose, max_tokens=512))
            return out
        finally:
            await client.aclose()
    comps = run(go())

    reported = chat_usages(stub)
    calls = store.calls(run_id)
    assert [c.purpose for c in calls] == purposes
    assert [(c.prompt_tokens, c.completion_tokens) for c in calls] == \
        [(u["prompt_tokens"], u["completion_tokens"]) for u in reported]
    price_in, price_out = pricing.DEFAULT_PRICES["gpt-4o-mini"]
    for call, comp in zip(calls, comps):
        expected = (call.prompt_tokens * price_in + call.completion_tokens * price_out) / 1e6
        assert call.cost_usd == pytest.approx(expected, rel=1e-12) and expected > 0
        assert comp.cost_usd == pytest.approx(expected, rel=1e-12)
        assert call.price_known
    total = sum((u["prompt_tokens"] * price_in + u["completion_tokens"] * price_out) / 1e6 for u in reported)
    summary = store.run_summary(run_id)
    assert summary["calls"] == 6 and summary["failed_calls"] == 0 and summary["cached_calls"] == 0
    assert summary["prompt_tokens"] == sum(u["prompt_tokens"] for u in reported)
    assert summary["completion_tokens"] == sum(u["completion_tokens"] for u in reported)
    assert summary["cost_usd"] == pytest.approx(total, rel=1e-9)
    assert store.run_cost(run_id) == pytest.approx(total, rel=1e-9)
    assert client.spent_usd == pytest.approx(total, rel=1e-9)
    assert summary["price_known"]


def test_unknown_model_is_priced_zero_and_labelled(stub, store):
    run_id = store.create_run(RunConfig(model="my-llama-70b"), [])
    comp = ask(LLMClient(openai_backend_for(stub, "my-llama-70b"), store, run_id=run_id))
    assert comp.completion_tokens > 0
    assert comp.cost_usd == 0.0 and comp.price_known is False
    (call,) = store.calls(run_id)
    assert call.cost_usd == 0.0 and call.price_known is False
    assert store.run_summary(run_id)["price_known"] is False


def test_set_prices_overrides_and_adds(stub, store):
    pricing.set_prices({"my-llama-70b": (1.0, 2.0), "gpt-4o-mini": (100.0, 1000.0)})
    custom = ask(LLMClient(openai_backend_for(stub, "my-llama-70b"), store))
    assert custom.price_known
    assert custom.cost_usd == pytest.approx((custom.prompt_tokens * 1.0 + custom.completion_tokens * 2.0) / 1e6)
    mini = ask(LLMClient(openai_backend_for(stub, "gpt-4o-mini"), store), purpose="evolve")
    assert mini.cost_usd == pytest.approx((mini.prompt_tokens * 100.0 + mini.completion_tokens * 1000.0) / 1e6)
    assert [c.cost_usd for c in store.calls()] == pytest.approx([custom.cost_usd, mini.cost_usd])


# -- the budget ----------------------------------------------------------------------------------------
def test_tiny_budget_refuses_before_sending(stub, store):
    client = LLMClient(openai_backend_for(stub), store, budget_usd=1e-7)
    with pytest.raises(BudgetExceeded, match="Budget"):
        ask(client)
    assert stub.count() == 0
    assert store.calls() == []


def test_budget_stops_before_overspending(stub, store):
    max_tokens = 200
    messages = [{"role": "user", "content": "Question 0?"}]
    worst = pricing.cost_usd("gpt-4o-mini", pricing.count_message_tokens(messages, "gpt-4o-mini"), max_tokens)[0]
    budget = 3 * worst
    run_id = store.create_run(RunConfig(model="gpt-4o-mini", budget_usd=budget), [])
    client = LLMClient(openai_backend_for(stub), store, run_id=run_id, budget_usd=budget)

    async def go():
        done = 0
        try:
            for i in range(200):
                await client.complete([{"role": "user", "content": f"Question {i}?"}], purpose="respond",
                                      max_tokens=max_tokens)
                done += 1
        except BudgetExceeded:
            return done
        finally:
            await client.aclose()
        return done
    done = run(go())
    assert 3 <= done < 200  # replies are shorter than max_tokens, so more than 3 fit, but it stopped
    assert stub.count() == done  # the refused call was never sent
    assert store.run_cost(run_id) <= budget
    # A resumed client knows what the run already spent.
    assert LLMClient(openai_backend_for(stub), store, run_id=run_id, budget_usd=budget).spent_usd == \
        pytest.approx(store.run_cost(run_id))


# -- keys ----------------------------------------------------------------------------------------------
def test_key_reaches_the_endpoint_but_never_the_store(stub, store, monkeypatch, tmp_path):
    secret = "sk-secret-" + uuid.uuid4().hex
    monkeypatch.setenv("EVOLAB_TEST_KEY", secret)
    config = RunConfig(model="gpt-4o-mini", base_url=stub.base_url, api_key_env="EVOLAB_TEST_KEY")
    run_id = store.create_run(config, [Seed("Write a haiku.")])
    client = LLMClient(openai_backend_for(stub, api_key_env="EVOLAB_TEST_KEY", max_retries=0), store, run_id=run_id)
    stub.inject(401)  # an error message is stored too

    async def go():
        try:
            with pytest.raises(LLMError, match="rejected the key"):
                await client.complete(MSG, purpose="evolve", max_tokens=64)
            for i in range(3):
                await client.complete([{"role": "user", "content": f"Tell me about {i}."}], purpose="respond")
        finally:
            await client.aclose()
    run(go())

    assert stub.count() == 4
    assert {r["headers"]["authorization"] for r in stub.chat_requests()} == {f"Bearer {secret}"}
    assert store.get_run(run_id)["config"].api_key_env == "EVOLAB_TEST_KEY"
    assert len(store.calls(run_id)) == 4

    def store_bytes() -> bytes:
        files = sorted(tmp_path.glob("evolab.db*"))
        assert files, "no store files found"
        return b"".join(f.read_bytes() for f in files)
    data = store_bytes()
    assert b"EVOLAB_TEST_KEY" in data  # we are reading the stored rows (the config names the variable)
    assert secret.encode() not in data
    assert secret[len("sk-secret-"):].encode() not in data
    store.close()  # checkpoints the WAL into the main file
    data = store_bytes()
    assert b"EVOLAB_TEST_KEY" in data and secret.encode() not in data


def test_missing_key_variable_names_it(stub, monkeypatch):
    monkeypatch.delenv("EVOLAB_MISSING_KEY", raising=False)
    with pytest.raises(LLMError) as info:
        openai_backend_for(stub, api_key_env="EVOLAB_MISSING_KEY")
    assert "EVOLAB_MISSING_KEY" in str(info.value)
    assert "not set" in str(info.value)
    assert stub.count() == 0


# -- concurrency ---------------------------------------------------------------------------------------
def test_concurrency_limit_is_respected(store):
    lock = threading.Lock()
    in_flight = max_seen = 0
    # The first four calls are answered once all four are in the handler together (the limit is used); every
    # call then takes 50 ms, time for a fifth to arrive if the limit let it (never exceeded).
    full = AllInFlight(4, then_s=0.05)

    def handler(messages, purpose):
        nonlocal in_flight, max_seen
        with lock:
            in_flight += 1
            max_seen = max(max_seen, in_flight)
        time.sleep(full())
        with lock:
            in_flight -= 1
        return "ok " + messages[-1]["content"]

    with StubServer(handler=handler) as stub:
        client = LLMClient(openai_backend_for(stub, timeout_s=120), store, concurrency=4)

        async def go():
            try:
                return await asyncio.gather(*[
                    client.complete([{"role": "user", "content": f"item {i}"}], purpose="respond", max_tokens=16)
                    for i in range(20)])
            finally:
                await client.aclose()
        comps = run(go())

    assert sorted(c.text for c in comps) == sorted(f"ok item {i}" for i in range(20))
    assert full.met and max_seen == 4  # the limit was used, never exceeded
    assert stub.max_in_flight == 4
    assert len(store.calls()) == 20


def test_stub_serves_64_concurrent_requests(store):
    # Every request is answered only once all 64 are in the stub together: a stub that served them one after
    # another would hold the first until it gave up. The client's fixed concurrency sends all 64 at once (the
    # adaptive limiter holds back all but a few until the first reply, which would never come).
    together = AllInFlight(64)
    with StubServer(latency=together) as stub:
        client = LLMClient(openai_backend_for(stub, max_retries=0, timeout_s=120), store, concurrency=64,
                           adaptive=False)

        async def go():
            try:
                return await asyncio.gather(*[
                    client.complete([{"role": "user", "content": f"item {i}"}], purpose="respond", max_tokens=16)
                    for i in range(64)])
            finally:
                await client.aclose()
        comps = run(go())
    assert len(comps) == 64 and all(c.text for c in comps)
    assert together.met and stub.max_in_flight == 64  # served in parallel, not one after another


# -- token counting ------------------------------------------------------------------------------------
def test_token_counting_uses_a_real_bpe_offline(monkeypatch):
    def no_network(*a, **k):
        raise OSError("network disabled in this test")
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    pricing.tokenizer_for.cache_clear()
    try:
        tok = pricing.tokenizer_for("gpt-4o-mini")
        assert tok.name != "chars/4"
        # A BPE, not the chars/4 fallback (which would say 3 and 5 here).
        assert pricing.count_tokens("a a a a a a a a") == 8
        assert pricing.count_tokens("internationalization") <= 3
        text = "서울은 한국의 수도입니다."
        assert pricing.count_tokens(text) > 0
        msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": text}]
        assert pricing.count_message_tokens(msgs) == \
            pricing.count_tokens("Be brief.") + 4 + pricing.count_tokens(text) + 4 + 3
    finally:
        pricing.tokenizer_for.cache_clear()


# -- the stub's other endpoints ------------------------------------------------------------------------
def test_stub_models_and_embeddings_through_the_openai_client(stub):
    import openai

    async def go():
        client = openai.AsyncOpenAI(base_url=stub.base_url, api_key="x", max_retries=0, timeout=5)
        try:
            models = await client.models.list()
            floats = await client.embeddings.create(model="emb", input=["alpha", "beta"], encoding_format="float")
            b64 = await client.embeddings.create(model="emb", input="alpha")  # the client's default: base64
            return models, floats, b64
        finally:
            await client.close()
    models, floats, b64 = run(go())
    assert "stub" in [m.id for m in models.data]
    a, b = (d.embedding for d in floats.data)
    assert len(a) == 16 and math.isclose(sum(x * x for x in a), 1.0, rel_tol=1e-9)
    assert a == embedding_vector("alpha") and a != b
    assert b64.data[0].embedding == pytest.approx(a, abs=1e-6)
    assert floats.usage.prompt_tokens == 2
    # Embedding requests are recorded but are not chat requests.
    assert stub.count() == 0 and len(stub.requests) == 3


def test_stub_rejects_unknown_faults(stub):
    with pytest.raises(ValueError):
        stub.inject("explode")
    with pytest.raises(ValueError):
        stub.inject(200)
    stub.inject(500)
    stub.clear_faults()
    assert ask(LLMClient(openai_backend_for(stub, max_retries=0)), purpose="equal").text == "Not Equal"


# -- the request on the wire (issue 9: the backend builds its own body) ------------------------------------
def test_requests_go_out_as_chat_completions_create_sends_them(stub):
    """The backend posts its own JSON body through the openai client (no SDK transform, no reply model): the
    same body, key and purpose header as chat.completions.create, and the same reading of the reply."""
    import openai
    from conftest import STUB_KEY

    messages = [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "Say hello, 안녕 — twice."}]
    fmt = {"type": "json_schema", "json_schema": {"name": "answer", "strict": True, "schema": {
        "type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"],
        "additionalProperties": False}}}
    backend = openai_backend_for(stub, concurrency=128)
    assert backend._client._client._transport._pool._max_keepalive_connections == 128  # a pool as big as C

    async def go():
        sdk = openai.AsyncOpenAI(base_url=stub.base_url, api_key=STUB_KEY)
        try:
            results = []
            for kw in ({}, {"response_format": fmt}):
                ours = await backend.complete(messages, temperature=0.3, max_tokens=40, purpose="respond", **kw)
                theirs = await sdk.chat.completions.create(model=backend.model, messages=messages, temperature=0.3,
                                                           max_tokens=40, extra_headers={"X-Evolab-Purpose": "respond"},
                                                           **kw)
                results.append((ours, theirs))
            return results
        finally:
            await sdk.close()
            await backend.aclose()

    results = run(go())
    requests = stub.chat_requests()
    assert len(requests) == 4
    for ours, theirs in zip(requests[0::2], requests[1::2]):
        assert ours["body"] == theirs["body"]
        assert ours["purpose"] == theirs["purpose"] == "respond"
        assert ours["headers"]["authorization"] == theirs["headers"]["authorization"] == f"Bearer {STUB_KEY}"
    for comp, resp in results:
        assert comp.text == resp.choices[0].message.content and comp.text
        assert comp.model == resp.model
        assert (comp.prompt_tokens, comp.completion_tokens) == (resp.usage.prompt_tokens, resp.usage.completion_tokens)
        assert comp.finish_reason == resp.choices[0].finish_reason


def test_a_reply_whose_content_is_not_text_is_unreadable_online_as_in_batch():
    """The online backend reads a message as batch import does (evolab.llm.base.message_text): text parts are
    joined, no content is an empty reply, and anything else (a number, an object) is an error, never cached text."""
    from evolab.llm.base import message_text

    assert message_text({"content": "ok"}) == "ok"
    assert message_text({"content": None}) == ""
    assert message_text({"content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}) == "ab"
    for bad in (5, {"text": "x"}, [{"type": "image_url", "image_url": "u"}], [3]):
        with pytest.raises(ValueError):
            message_text({"content": bad})
