"""Rate limits: header parsing, the request and token buckets, AIMD concurrency, runs against a rate-limited
stub with and without headers, --rpm/--tpm caps measured at the stub, and no stall when a run is stopped."""
from __future__ import annotations

import asyncio
import email.utils
import json
import math
import subprocess
import sys
import threading
import time

import pytest
from conftest import ROOT, STUB_KEY_ENV, openai_backend_for

from evolab.engine import pipeline
from evolab.llm.client import LLMClient
from evolab.llm.ratelimit import (
    MAX_COOLDOWN_S,
    Bucket,
    CallsStopped,
    HeaderLimit,
    RateLimiter,
    describe,
    estimate_prompt_tokens,
    parse_duration,
    parse_retry_after,
    read_ratelimit_headers,
)
from evolab.schema import RunConfig, Seed
from evolab.store import Store
from evolab.testing.stub_server import StubServer, format_reset


class Clock:
    def __init__(self, t: float = 1000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def ask_many(client: LLMClient, n: int, max_tokens: int = 16):
    async def go():
        try:
            return await asyncio.gather(*[
                client.complete([{"role": "user", "content": f"Question {i}?"}], purpose="respond",
                                max_tokens=max_tokens) for i in range(n)], return_exceptions=True)
        finally:
            await client.aclose()
    return asyncio.run(go())


# -- reading headers ------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, seconds", [
    ("1s", 1.0), ("6m0s", 360.0), ("20ms", 0.02), ("1m30.5s", 90.5), ("2h3m4s", 7384.0), ("0.5", 0.5),
    ("7.66s", 7.66), ("2m59.56s", 179.56), ("0s", 0.0), (" 1s ", 1.0),
])
def test_reset_durations_in_openai_format(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", [None, "", "soon", "5x", "1s2", "-1", "m1s", "inf"])
def test_unreadable_durations_are_none(text):
    assert parse_duration(text) is None


@pytest.mark.parametrize("seconds", [0.02, 0.5, 1.5, 59.9, 60.0, 90.5, 3725.0])
def test_the_stub_writes_resets_the_parser_reads(seconds):
    assert parse_duration(format_reset(seconds)) == pytest.approx(seconds, abs=0.001)


def test_retry_after_prefers_milliseconds_then_seconds_then_a_date():
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "3"}) == 0.25
    assert parse_retry_after({"retry-after": "3"}) == 3.0
    now = time.time()
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert parse_retry_after({"retry-after": date}, now=now) == pytest.approx(30, abs=1.5)
    assert parse_retry_after({}) is None
    assert parse_retry_after({"retry-after": "whenever"}) is None


def test_ratelimit_headers_for_requests_and_tokens():
    found = read_ratelimit_headers({
        "x-ratelimit-limit-requests": "500", "x-ratelimit-remaining-requests": "499",
        "x-ratelimit-reset-requests": "120ms", "x-ratelimit-limit-tokens": "200000",
        "x-ratelimit-remaining-tokens": "199000", "x-ratelimit-reset-tokens": "300ms"})
    assert found["requests"] == HeaderLimit(500, 499, 0.12)
    assert found["tokens"] == HeaderLimit(200000, 199000, 0.3)
    assert read_ratelimit_headers({"x-ratelimit-limit-requests": "500"}) == {}  # no remaining: nothing to go by
    assert read_ratelimit_headers({"content-type": "application/json"}) == {}


def test_prompt_estimate_is_cheap_and_errs_high():
    from evolab.llm.pricing import count_message_tokens
    messages = [{"role": "user", "content": "Rewrite the prompt below so that it is harder to answer. " * 10},
                {"role": "user", "content": "피보나치 수열을 설명하고 예를 드세요. " * 10}]
    assert estimate_prompt_tokens(messages) >= count_message_tokens(messages, "gpt-4o-mini")


# -- buckets ---------------------------------------------------------------------------------------------
def test_user_cap_bucket_paces_and_lets_a_call_bigger_than_itself_through():
    clock = Clock()
    b = Bucket("rpm", per_minute=600, clock=clock)  # 10 a second, holds one second's worth
    for _ in range(10):
        assert b.wait_s(1, clock()) == 0
        b.take(1)
    assert b.wait_s(1, clock()) == pytest.approx(0.1)
    clock.t += 0.1
    assert b.wait_s(1, clock()) == 0
    # A call of 25 units in a bucket of 10: it waits until the bucket is full, then goes into debt.
    tokens = Bucket("tpm", per_minute=600, clock=clock)
    tokens.take(5)
    assert tokens.wait_s(25, clock()) == pytest.approx(0.5)
    clock.t += 0.5
    assert tokens.wait_s(25, clock()) == 0
    tokens.take(25)
    assert tokens.wait_s(1, clock()) == pytest.approx(1.6)  # the debt of 15 is repaid first


def test_header_bucket_waits_for_the_reset_the_server_named():
    clock = Clock()
    b = Bucket("requests (headers)", clock=clock)
    assert not b.known and b.wait_s(1, clock()) == 0  # nothing known yet: no pacing
    b.snapshot(HeaderLimit(limit=30, remaining=2, reset_s=2.5), clock())
    assert b.wait_s(1, clock()) == 0
    b.take(1)
    b.take(1)
    assert b.wait_s(1, clock()) == pytest.approx(2.5)
    # A reply written before our last calls arrived says more is left: it is not believed.
    b.snapshot(HeaderLimit(limit=30, remaining=5, reset_s=2.4), clock())
    assert b.wait_s(1, clock()) == pytest.approx(2.5)
    # One that says less is left is (another client, or calls we did not count).
    clock.t += 2.5
    assert b.wait_s(1, clock()) == 0 and b.level == 30  # full again at the reset
    b.take(1)
    # A late reply from the window before the reset does not empty the new one.
    b.snapshot(HeaderLimit(limit=30, remaining=0, reset_s=0.01), clock())
    assert b.level == 29
    b.snapshot(HeaderLimit(limit=30, remaining=20, reset_s=3.0), clock())
    assert b.level == 20  # a fresh reply with less left lowers it


def test_exhausted_header_bucket_without_a_reset_is_probed_again_soon():
    clock = Clock()
    b = Bucket("tokens (headers)", clock=clock)
    b.snapshot(HeaderLimit(limit=1000, remaining=10, reset_s=None), clock())
    assert 0 < b.wait_s(500, clock()) <= 1.0
    clock.t += 1.0
    assert b.wait_s(500, clock()) == 0


def test_token_reservation_is_corrected_by_the_usage():
    clock = Clock()
    limiter = RateLimiter(8, tpm=60_000, clock=clock)  # 1,000 tokens a second, holds 1,000

    async def go():
        assert limiter.counts_tokens
        t = await limiter.acquire(tokens=600)  # prompt estimate + max_tokens
        assert limiter.user_tokens.level == 400
        limiter.release(t, used_tokens=150)  # the reply used far less than max_tokens
        assert limiter.user_tokens.level == 850
        t = await limiter.acquire(tokens=600)
        limiter.release(t, outcome="rate_limited")  # refused: nothing spent
        assert limiter.user_tokens.level == 850
    asyncio.run(go())


def test_header_token_reservations_are_not_corrected_past_a_fresh_snapshot():
    clock = Clock()
    limiter = RateLimiter(8, clock=clock)
    limiter.observe_headers({"x-ratelimit-limit-tokens": "10000", "x-ratelimit-remaining-tokens": "10000"})
    assert limiter.counts_tokens

    async def go():
        t = await limiter.acquire(tokens=1000)
        assert limiter.header_tokens.level == 9000
        limiter.release(t, used_tokens=200)
        assert limiter.header_tokens.level == 9800
        clock.t += 10  # the pace (10,000 tokens a minute spent evenly) has room again
        t = await limiter.acquire(tokens=1000)
        clock.t += 5  # the server's bucket refilled (a new epoch): the old reservation is no longer ours
        limiter.header_tokens.snapshot(HeaderLimit(10000, 5000, 1.0), clock())
        limiter.header_tokens.reset_at = clock()
        limiter.header_tokens.wait_s(1, clock())  # refill -> new epoch
        level = limiter.header_tokens.level
        limiter.release(t, used_tokens=100)
        assert limiter.header_tokens.level == level
    asyncio.run(go())


# -- AIMD ------------------------------------------------------------------------------------------------
async def fill_rounds(limiter: RateLimiter, rounds: int) -> None:
    """Rounds of calls that all succeed: as many as the limiter admits at once, then all answered."""
    for _ in range(rounds):
        tickets = []
        while limiter._wait_s(0, limiter.clock()) == 0.0:
            tickets.append(await limiter.acquire())
        for t in tickets:
            limiter.release(t)


def test_a_closed_window_cuts_the_concurrency_once_and_retry_after_is_honoured():
    clock = Clock()
    limiter = RateLimiter(16, clock=clock)

    async def go():
        await fill_rounds(limiter, 4)  # slow start: 8, then one more per success, up to 16
        assert limiter.limit == 16
        tickets = [await limiter.acquire() for _ in range(16)]
        assert limiter._wait_s(0, clock()) is None  # 16 in flight: full
        # Ten 429s of calls sent together, at levels where calls just got through: a closed window, one burst.
        for t in tickets[:10]:
            limiter.release(t, outcome="rate_limited", retry_after=2.0)
        assert limiter.limit == 12 and limiter.cuts == 1 and limiter.rate_limited == 10
        assert limiter.state()["why"] == "window" and limiter.ceiling is None
        assert limiter.blocked_until == pytest.approx(clock() + 2.0)
        for t in tickets[10:]:
            limiter.release(t)
        assert limiter._wait_s(0, clock()) == pytest.approx(2.0)  # everyone waits out the Retry-After
        clock.t += 2.0
        probe = await limiter.acquire()  # then one call goes first
        assert limiter._wait_s(0, clock()) is None
        limiter.release(probe)
        assert limiter._wait_s(0, clock()) == 0  # it got through: the others follow
    asyncio.run(go())


def test_a_full_server_cuts_to_the_level_it_refused_and_pauses_nobody():
    """A 503 of a call sent with more in flight than any that got through: the server's cap. The first one (it ends
    the slow start) puts the limit at the most calls that got through at once (one below the level refused, if
    lower); nobody pauses, only the refused call waits its own Retry-After. A refused call sent at a level the limit
    is already under cuts nothing more; one sent at a level still allowed takes one off (the limit is steered by
    the share of calls refused)."""
    clock = Clock()
    limiter = RateLimiter(64, clock=clock)

    async def go():
        await fill_rounds(limiter, 1)  # 8 through at once: slow start goes on
        tickets = [await limiter.acquire() for _ in range(11)]
        assert [t.level for t in tickets] == list(range(1, 12))
        limiter.pause(None)  # the HTTP hook saw the 503: nothing is admitted until the release reads it
        assert limiter._wait_s(0, clock()) is None
        limiter.release(tickets[9], outcome="rate_limited", retry_after=1.0)
        assert limiter.limit == 8 and limiter.ceiling == 10 and limiter.state()["why"] == "refusals"
        assert limiter.blocked_until <= clock() and tickets[9].retry_at == pytest.approx(clock() + 1.0)
        for t in (tickets[10], tickets[8]):  # sent at 11 and 9, over the new limit: no second cut
            limiter.release(t, outcome="rate_limited")
        assert limiter.limit == 8 and limiter.cuts == 1
        limiter.release(tickets[7], outcome="rate_limited")  # refused at 8 too: one less
        assert limiter.limit == 7 and limiter.cuts == 2 and limiter.blocked_until <= clock()
        assert limiter._wait_s(0, clock()) is None  # 7 in flight at a limit of 7
        limiter.release(tickets[0])
        assert limiter._wait_s(0, clock()) == 0
    asyncio.run(go())


def simulate(limiter: RateLimiter, clock: Clock, admits, seconds: float, latency: float = 0.2):
    """Drive the limiter against a server without headers or Retry-After, on a simulated clock: an endless
    queue of calls, each admitted call reaches the server at once, a 429 comes back after 1 ms (through
    the HTTP hook first, as the OpenAI backend does), a success after `latency`. Returns
    (send times of the calls taken, number of 429s)."""
    import heapq
    events, seq, taken, refused = [], 0, [], 0
    end = clock.t + seconds
    while clock.t < end:
        wait = limiter._wait_s(0, clock.t)
        while wait == 0.0:
            ticket = limiter._admit(0)
            ok = admits(clock.t)
            taken += [clock.t] if ok else []
            refused += not ok
            seq += 1
            heapq.heappush(events, (clock.t + (latency if ok else 0.001), seq, ticket, ok))
            wait = limiter._wait_s(0, clock.t)
        next_t = events[0][0] if events else math.inf
        if wait is not None and wait > 0:
            next_t = min(next_t, clock.t + wait)
        clock.t = next_t
        while events and events[0][0] <= clock.t:
            _, _, ticket, ok = heapq.heappop(events)
            if ok:
                limiter.release(ticket)
            else:
                limiter.pause(None)
                limiter.release(ticket, outcome="rate_limited")
    return taken, refused


def fixed_window(per_window: int, window_s: float):
    counts = {}

    def admits(t: float) -> bool:
        w = int(t // window_s)
        counts[w] = counts.get(w, 0) + 1
        return counts[w] <= per_window
    return admits


def sliding_window(per_window: int, window_s: float):
    from collections import deque
    recent = deque()

    def admits(t: float) -> bool:
        while recent and recent[0] <= t - window_s:
            recent.popleft()
        if len(recent) < per_window:
            recent.append(t)
            return True
        return False
    return admits


@pytest.mark.parametrize("server, concurrency", [(fixed_window, 64), (fixed_window, 24), (sliding_window, 24)],
                         ids=["fixed-64", "fixed-24", "sliding-24"])
def test_without_retry_after_the_limiter_learns_when_the_server_takes_calls_again(server, concurrency):
    """400 calls per 4 s window, no headers, no Retry-After, replies in 200 ms: 64 calls in flight fill a
    window in 1.3 s, 24 in 3.3 s (little time to lose). The limiter learns from the bursts how long the
    server takes to take calls again (probing a little before that) and how many it takes between bursts
    (after that many, one call at a time finds the window's end): at least 90 % of what the server allows,
    at most 2 % answered 429. (1 s doubling reached 87 % with 24 in flight and 73 % on the sliding window,
    and 4.6 % 429s with 64.)"""
    clock = Clock(0.0)
    limiter = RateLimiter(concurrency, clock=clock)
    taken, refused = simulate(limiter, clock, server(400, 4.0), seconds=60.0)
    assert len(taken) >= 0.9 * 400 * 60.0 / 4.0
    assert refused <= 0.02 * (len(taken) + refused)
    assert limiter._recovery_s is not None and limiter._cycle_end < math.inf  # both were learned


def test_the_learned_quota_and_recovery_follow_a_server_that_got_quicker():
    """A server that takes more calls, and sooner, than the last bursts showed: the limiter is not held to
    what it learned (past the old quota, one call at a time doubles with each success; early probes)."""
    clock = Clock(0.0)
    limiter = RateLimiter(64, clock=clock)
    simulate(limiter, clock, fixed_window(200, 4.0), seconds=40.0)
    assert limiter._cycle_end - limiter._cycle_from == 200
    recovery = limiter._recovery_s
    taken, refused = simulate(limiter, clock, fixed_window(400, 3.0), seconds=60.0)
    assert len(taken) >= 0.9 * 400 * 60.0 / 3.0 and refused <= 0.03 * len(taken)
    assert limiter._cycle_end - limiter._cycle_from == 400 and limiter._recovery_s < recovery


def test_probes_without_retry_after_never_stall():
    """A server that takes nothing for a long time: probes go further and further apart, never more than
    MAX_COOLDOWN_S, and one call goes through as soon as the server takes calls again."""
    clock = Clock(0.0)
    limiter = RateLimiter(8, clock=clock)
    taken, refused = simulate(limiter, clock, lambda t: t >= 200.0, seconds=240.0)
    assert taken and taken[0] < 200.0 + MAX_COOLDOWN_S
    assert refused < 40  # probes grow 1.5 times apart, up to 30 s: not one every few ms


def test_concurrency_stays_between_one_and_the_configured_limit():
    clock = Clock()
    limiter = RateLimiter(4, clock=clock)

    async def go():
        for _ in range(20):  # refusal after refusal
            clock.t += 100
            limiter._probe = False
            t = await limiter.acquire()
            limiter.release(t, outcome="rate_limited", retry_after=0)
        assert limiter.limit == 1
        clock.t += 100
        # Rounds of successes at the limit grow it back (the ceiling is tried now and then, and a call through at
        # it raises it), never past the configured 4.
        await fill_rounds(limiter, 300)
        assert limiter.limit == 4
    asyncio.run(go())


def test_only_a_few_calls_go_before_the_first_reply():
    """Its headers may say the server takes fewer at once than --concurrency."""
    limiter = RateLimiter(64)

    async def go():
        tickets = [await limiter.acquire() for _ in range(8)]
        assert limiter._wait_s(0, limiter.clock()) is None
        limiter.release(tickets[0])
        assert limiter._wait_s(0, limiter.clock()) == 0
    asyncio.run(go())


def test_fixed_mode_is_the_old_semaphore():
    limiter = RateLimiter(3, adaptive=False)

    async def go():
        tickets = [await limiter.acquire() for _ in range(3)]
        limiter.release(tickets[0], outcome="rate_limited", retry_after=10)
        assert limiter.limit == 3 and limiter.blocked_until == 0
        assert limiter._wait_s(0, limiter.clock()) == 0
    asyncio.run(go())


def test_state_and_description():
    limiter = RateLimiter(64, rpm=500)
    limiter.limit = 23
    text = describe(limiter.state())
    assert "req/min" in text and "tok/min" in text and "concurrency 23/64 (adaptive)" in text and "RPM cap 500" in text
    limiter.observe_headers({"x-ratelimit-limit-requests": "500", "x-ratelimit-remaining-requests": "400",
                             "x-ratelimit-reset-requests": "12s"})
    state = limiter.state()
    assert state["mode"] == "headers" and "request limit 500 (headers)" in describe(state)


# -- against the rate-limited stub -------------------------------------------------------------------------
@pytest.mark.parametrize("headers", [True, False], ids=["headers", "no-headers"])
def test_a_throttled_run_meets_few_429s(store, headers):
    """Up to 16 calls in flight (160 a second at 100 ms) against 80 allowed per 2 s window: every call
    succeeds. With headers the buckets pace the calls (no 429); without them AIMD and Retry-After keep the
    429s to a few per window (2-5 % here, 12 % with the old fixed concurrency, see the next test)."""
    with StubServer(latency=0.1, rpm=2400, window_s=2.0, ratelimit_headers=headers) as stub:
        client = LLMClient(openai_backend_for(stub, max_retries=6, timeout_s=10), store, concurrency=16)
        results = ask_many(client, 240)
        statuses = [r["status"] for r in stub.chat_requests()]
    assert not [r for r in results if isinstance(r, Exception)]
    assert statuses.count(200) == 240
    share = statuses.count(429) / len(statuses)
    assert share <= (0.02 if headers else 0.10), statuses.count(429)
    assert client.limiter.state()["mode"] == ("headers" if headers else "adaptive")
    assert (client.limiter.cuts == 0) == headers  # without headers, 429s cut the concurrency


def test_the_old_fixed_concurrency_walks_into_429s(store):
    """For contrast (what the limiter replaces): the limiter off, 16 calls in flight against 8 allowed per 1 s
    window. The 16 are sent at once, and each window's retries come back together when it ends, so every window
    takes 8 and turns the rest away, whatever the machine's speed (only a machine that could not send 8 calls a
    second would see no 429): at least the first burst's 8 are 429s, at most 40 succeed."""
    with StubServer(rpm=480, window_s=1.0) as stub:
        client = LLMClient(openai_backend_for(stub, max_retries=12, timeout_s=30), store, concurrency=16,
                           adaptive=False)
        results = ask_many(client, 40)
        statuses = [r["status"] for r in stub.chat_requests()]
    assert not [r for r in results if isinstance(r, Exception)]
    assert statuses.count(200) == 40
    assert statuses.count(429) >= 16 - 8
    assert statuses.count(429) / len(statuses) > 0.08


def _max_in_window(times: list[float], span: float) -> int:
    times = sorted(times)
    best, j = 0, 0
    for i, t in enumerate(times):
        while times[j] <= t - span:
            j += 1
        best = max(best, i - j + 1)
    return best


def test_rpm_cap_is_respected_at_the_stub(store):
    with StubServer() as stub:
        client = LLMClient(openai_backend_for(stub), store, concurrency=16, rpm=600)  # 10 a second
        ask_many(client, 40)
        times = [r["time"] for r in stub.chat_requests()]
    assert len(times) == 40
    # One second's worth may go at once; after that 10 a second (a little slack for timer rounding).
    assert _max_in_window(times, 1.0) <= 10 + 10 + 1
    assert max(times) - min(times) >= (40 - 10) / 10 * 0.9


def test_tpm_cap_is_respected_at_the_stub(store):
    """Each call reserves its prompt estimate + max_tokens (about 60 tokens here) against 6,000 a minute."""
    with StubServer() as stub:
        client = LLMClient(openai_backend_for(stub), store, concurrency=16, tpm=6000)  # 100 tokens a second
        ask_many(client, 12, max_tokens=40)
        requests = stub.chat_requests()
    times = [r["time"] for r in requests]
    used = sum(r["usage"]["total_tokens"] for r in requests)
    assert len(times) == 12
    # The first call may go at once (the bucket is full); the rest are paced by what they reserved and used.
    assert max(times) - min(times) >= (used - 100) / 100 * 0.5


def test_rpm_and_tpm_from_the_cli_are_stored_and_used(tmp_path):
    seeds = tmp_path / "seeds.txt"
    seeds.write_text("Explain recursion.\nName three prime numbers.\n", encoding="utf-8")
    db = tmp_path / "cli.db"
    import os
    env = {**os.environ, STUB_KEY_ENV: "sk-stub-test-key", "PYTHONPATH": str(ROOT)}
    with StubServer() as stub:
        r = subprocess.run([sys.executable, "-m", "evolab", "run", str(seeds), "--db", str(db), "--rounds", "1",
                            "--base-url", stub.base_url, "--model", "gpt-4o-mini", "--api-key-env", STUB_KEY_ENV,
                            "--rpm", "1200", "--tpm", "500000"], cwd=ROOT, env=env, capture_output=True, text=True,
                           timeout=120)
        assert r.returncode == 0, r.stderr
        times = [q["time"] for q in stub.chat_requests()]
    store = Store(str(db))
    try:
        (run_,) = store.list_runs()
        assert (run_["config"].rpm, run_["config"].tpm) == (1200, 500000)
        limits = json.loads(store.get_meta(f"ratelimit|{run_['id']}"))
        assert limits["rpm_cap"] == 1200 and limits["final"]
    finally:
        store.close()
    assert _max_in_window(times, 1.0) <= 20 + 20 + 1  # 20 a second, one second's worth at once
    bad = subprocess.run([sys.executable, "-m", "evolab", "run", str(seeds), "--db", str(db), "--rpm", "0"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--rpm must be at least 1" in bad.stderr


# -- no stall ------------------------------------------------------------------------------------------
def stop_when(condition, stop: threading.Event, timeout_s: float = 120.0) -> threading.Thread:
    """A thread that sets `stop` once `condition()` holds (checked every 10 ms), or after `timeout_s` so that a
    test whose condition never comes ends anyway; `.met` says whether it came."""
    def watch():
        deadline = time.monotonic() + timeout_s
        while not condition():
            if time.monotonic() > deadline:
                break
            time.sleep(0.01)
        else:
            thread.met = True
        stop.set()

    thread = threading.Thread(target=watch, daemon=True)
    thread.met = False
    thread.start()
    return thread


def test_a_stop_event_fails_the_calls_waiting_for_the_limiter_at_once(store):
    """A server allowing 2 calls per 30 s window: calls queue for the reset; a stop ends them promptly."""
    stop = threading.Event()
    with StubServer(rpm=4, window_s=30.0, ratelimit_headers=True) as stub:
        client = LLMClient(openai_backend_for(stub, timeout_s=30), store, concurrency=2, stop_event=stop)
        limiter = client.limiter

        def waiting_for_the_reset() -> bool:  # the window's two calls are back; the other four wait for its end
            return limiter.header_requests.known and limiter.in_flight == 0 and len(limiter._queue) == 4

        watcher = stop_when(waiting_for_the_reset, stop)
        results = ask_many(client, 6)
        watcher.join()
        statuses = [r["status"] for r in stub.chat_requests()]
    assert watcher.met, "the calls never queued for the reset"
    assert sum(not isinstance(r, Exception) for r in results) == 2
    assert sum(isinstance(r, CallsStopped) for r in results) == 4
    # Ended by the stop, not by the reset: no call went after it (nor into a 429 before it).
    assert statuses == [200, 200]


def test_a_stopped_throttled_run_ends_promptly_as_stopped(store):
    stop = threading.Event()
    with StubServer(rpm=6, window_s=30.0, ratelimit_headers=True) as stub:
        config = RunConfig(model="gpt-4o-mini", base_url=stub.base_url, rounds=2, concurrency=8)
        run_id = pipeline.create_run(store, [Seed("Explain recursion."), Seed("Name a prime.")], config)
        # Stopped once the window's three calls were answered: the rest of the run waits for its 30 s reset.
        watcher = stop_when(lambda: sum(r["status"] == 200 for r in stub.chat_requests()) >= 3, stop)
        status = pipeline.run_sync(store, run_id, backend=openai_backend_for(stub, timeout_s=30), stop_event=stop)
        watcher.join()
        answered = sum(r["status"] == 200 for r in stub.chat_requests())
    assert watcher.met and status == "stopped"
    assert answered == 3  # it ended before the reset: no call went after it
    assert not [n for n in store.nodes(run_id) if n.status == "failed"]  # a stop is not a failure


@pytest.mark.timeout(300)  # a deadlock fails here (pytest-timeout), not after the suite's 900 s
def test_the_budget_stops_a_throttled_run_without_a_deadlock(store):
    with StubServer(rpm=600, window_s=2.0, ratelimit_headers=True) as stub:
        config = RunConfig(model="gpt-4o-mini", base_url=stub.base_url, rounds=3, fanout=2, concurrency=16,
                           budget_usd=0.002)
        run_id = pipeline.create_run(store, [Seed(f"Explain topic {i}.") for i in range(6)], config)
        status = pipeline.run_sync(store, run_id, backend=openai_backend_for(stub, timeout_s=30))
    assert status == "budget"
    assert 0 < store.run_cost(run_id) <= 0.002
