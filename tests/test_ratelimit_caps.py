"""Limits a server does not announce exactly (issue 24): a per-minute limit enforced over short windows, a
concurrency cap answered with 503 and no headers, and a server that slows down past its cap before it refuses.
First on a simulated clock (exact, fast, caps and windows the limiter was not tuned on), then against the stub
server; each asserts the share of requests refused and what the limiter settled on, never wall-clock time."""
from __future__ import annotations

import asyncio
import heapq
import math

import pytest
from conftest import openai_backend_for

from evolab.llm.client import LLMClient
from evolab.llm.ratelimit import RateLimiter, describe, describe_settled
from evolab.testing.stub_server import StubServer


class Clock:
    def __init__(self, t: float = 0.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def simulate_cap(limiter: RateLimiter, clock: Clock, cap: int, *, queue: int = 0, latency: float = 0.2,
                 seconds: float = 60.0, retry_after: float | None = None, new_cap_at: tuple[float, int] | None = None):
    """An endless queue of calls against a server that serves `cap` at once in `latency` each (a FIFO of `queue`
    more wait for a slot), and refuses past that within 1 ms (through the HTTP hook first, as the OpenAI backend
    does). `new_cap_at=(t, cap)` changes its cap at time t. Returns (calls answered, calls refused)."""
    events, seq, serving, waiting, ok, refused = [], 0, 0, [], 0, 0
    end = clock.t + seconds
    retry = []  # refused calls waiting for their own Retry-After: (time, ticket)

    def push(t: float, kind: str, ticket) -> None:
        nonlocal seq
        seq += 1
        heapq.heappush(events, (t, seq, kind, ticket))

    while clock.t < end:
        if new_cap_at and clock.t >= new_cap_at[0]:
            cap, new_cap_at = new_cap_at[1], None
        wait = limiter._wait_s(0, clock.t)
        while wait == 0.0:
            ticket = limiter._admit(0)
            if serving < cap:
                serving += 1
                push(clock.t + latency, "done", ticket)
            elif len(waiting) < queue:
                waiting.append(ticket)
            else:
                push(clock.t + 0.001, "refused", ticket)
            wait = limiter._wait_s(0, clock.t)
        next_t = events[0][0] if events else math.inf
        if wait is not None and wait > 0:
            next_t = min(next_t, clock.t + wait)
        clock.t = next_t
        while events and events[0][0] <= clock.t:
            _, _, kind, ticket = heapq.heappop(events)
            if kind == "done":
                serving -= 1
                limiter.release(ticket)
                ok += 1
                while waiting and serving < cap:
                    serving += 1
                    push(clock.t + latency * (1 + 0.0), "done", waiting.pop(0))
            else:
                limiter.pause(retry_after)
                limiter.release(ticket, outcome="rate_limited", retry_after=retry_after)
                refused += 1
    return ok, refused


# Tuned on a cap of 16; 8 and 40 were not looked at while tuning.
@pytest.mark.parametrize("cap", [8, 16, 40])
@pytest.mark.parametrize("retry_after", [None, 1.0], ids=["bare-503", "retry-after"])
def test_a_full_server_is_found_and_held_at_its_cap(cap, retry_after):
    """No headers, 503 past the cap: at least 90 % of what the server can serve, at most 2 % refused, and the
    limit holds at the cap (one above it now and then: the refused share it steers by, about 1 %)."""
    clock = Clock()
    limiter = RateLimiter(64, clock=clock)
    ok, refused = simulate_cap(limiter, clock, cap, retry_after=retry_after)
    assert ok >= 0.9 * cap / 0.2 * 60
    assert refused <= 0.02 * (ok + refused)
    assert cap - 1 <= limiter.limit < cap + 2 and limiter.ceiling in (cap + 1, cap + 2)
    state = limiter.state()
    assert state["why"] == "refusals" and limiter.blocked_until == 0.0  # nobody paused
    assert 0 < state["recent_refused"] <= 0.02 * state["recent_calls"]
    assert f"refusals: {state['recent_refused']} of the last {state['recent_calls']} calls" in describe_settled(state)


@pytest.mark.parametrize("cap", [8, 16, 40])
def test_a_server_that_slows_down_before_it_refuses_is_held_near_its_cap(cap):
    """It serves `cap` at once and queues as many again (their replies come later) before refusing: the limiter
    settles near the cap by the latency, not at the edge of the queue."""
    clock = Clock()
    limiter = RateLimiter(2 * cap + 8, clock=clock)
    ok, refused = simulate_cap(limiter, clock, cap, queue=cap)
    assert ok >= 0.9 * cap / 0.2 * 60
    assert refused <= 0.02 * (ok + refused)
    assert cap * 0.75 <= limiter.limit <= cap + 6
    assert limiter.state()["why"] == "latency"


def test_when_the_server_frees_up_the_limit_follows():
    clock = Clock()
    limiter = RateLimiter(64, clock=clock)
    simulate_cap(limiter, clock, 16, seconds=30.0)
    assert limiter.limit < 18  # at the cap, one above it now and then
    ok, refused = simulate_cap(limiter, clock, 16, seconds=90.0, new_cap_at=(clock.t, 40))
    assert limiter.limit >= 36 and refused <= 0.02 * (ok + refused)


# -- against the stub -------------------------------------------------------------------------------------
def ask_many(client: LLMClient, n: int):
    async def go():
        try:
            return await asyncio.gather(*[
                client.complete([{"role": "user", "content": f"Question {i}?"}], purpose="respond", max_tokens=16)
                for i in range(n)], return_exceptions=True)
        finally:
            await client.aclose()
    return asyncio.run(go())


def test_a_quantized_per_minute_limit_is_paced_evenly(store):
    """Headers announce 2,400 requests a minute (the stub's minute), enforced as 40 a second: the limiter spends the
    minute's budget evenly whatever `remaining` says, so 240 calls barely meet a 429. (Before: 64 in flight at
    once spent a second's 40 and walked into 429s for the rest.)"""
    with StubServer(latency=0.05, rpm=2400, window_s=60.0, quantum_s=1.0, ratelimit_headers=True) as stub:
        client = LLMClient(openai_backend_for(stub, max_retries=6, timeout_s=10), store, concurrency=64)
        results = ask_many(client, 240)
        statuses = [r["status"] for r in stub.chat_requests()]
    assert not [r for r in results if isinstance(r, Exception)]
    assert statuses.count(200) == 240
    assert statuses.count(429) <= 0.02 * len(statuses)
    state = client.limiter.state()
    assert 0.7 * 2400 <= state["pace_requests_per_min"] <= 2400 and state["pace_requests_period_s"] == 60.0
    assert "paced at" in describe_settled(state) and "announced (headers" in describe(state)


@pytest.mark.parametrize("retry_after", [None, 1.0], ids=["bare-503", "retry-after"])
def test_a_full_server_without_headers_on_the_stub(store, retry_after):
    """8 at once, 503 past that, no headers (with or without Retry-After): every call succeeds, the server is filled
    to its cap, few calls are refused, and the limit settles at the cap by the refused share. Measured 5-6 refused of
    about 305 on a 2-core machine at load 2-5 (the start's overshoot, at most 4, then about 1 %); the bound allows
    three times that, since a busy machine reads replies late (our count of calls in flight then runs ahead of the
    server's, and the limit a little above 8). The 2 % goal itself is pinned on the simulated clock above."""
    with StubServer(latency=0.25, max_concurrent=8, busy_retry_after=retry_after) as stub:
        client = LLMClient(openai_backend_for(stub, max_retries=6, timeout_s=10), store, concurrency=64)
        results = ask_many(client, 300)
        statuses = [r["status"] for r in stub.chat_requests()]
    assert not [r for r in results if isinstance(r, Exception)]
    assert statuses.count(200) == 300 and stub.max_in_flight == 8
    assert statuses.count(503) <= 4 + 0.05 * len(statuses)
    state = client.limiter.state()
    assert 7 <= client.limiter.limit <= 12 and state["why"] == "refusals"
    assert state["recent_refused"] <= 0.05 * state["recent_calls"]
    assert "settled at" in describe_settled(state) and "refusals:" in describe_settled(state)


def test_a_server_that_queues_before_it_refuses_on_the_stub(store):
    """8 at once and 8 waiting, 503 past 16: the limiter holds by the latency, under the 16 where the refusals begin.
    (Measured 2-4 refused of about 303 and the limit at 9.6-14.5 on a 2-core machine at load 0.3-2: the latency lets
    it grow while fewer than 2 calls wait and cuts it past 4, and our count of calls in flight runs a little ahead of
    the server's.)"""
    with StubServer(latency=0.25, max_concurrent=8, queue=8) as stub:
        client = LLMClient(openai_backend_for(stub, max_retries=6, timeout_s=10), store, concurrency=64)
        results = ask_many(client, 300)
        statuses = [r["status"] for r in stub.chat_requests()]
    assert not [r for r in results if isinstance(r, Exception)]
    # The limit is held by the latency, under the 16 where the 503s begin. The refusals (the start's overshoot)
    # came to 8-23 of about 310 on a loaded machine before the slow start was bounded: a loose bound here; the 2 %
    # goal is pinned on the simulated clock above.
    assert statuses.count(503) <= 0.10 * len(statuses)
    assert client.limiter.limit < 16
