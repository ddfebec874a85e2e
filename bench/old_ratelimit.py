"""Today's rate limiter (evolab/llm/ratelimit.py as of commit aa7802c), kept only so bench/ratelimit.py can run it
side by side with the current one. Not imported by evolab."""
from __future__ import annotations

import asyncio
import email.utils
import math
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Mapping

from evolab.llm.base import BudgetExceeded, LLMError

DECREASE = 0.75  # a 429/503 burst leaves three quarters of the concurrency
FIRST_PROBE_S = 0.25  # without Retry-After and nothing learned: the first probe goes this long after a burst,
PROBE_GROWTH = 1.3  # ... and each next one this many times as long after it (0.25, 0.33, 0.42, 0.55, 0.71 s...)
MAX_COOLDOWN_S = 30.0  # the longest step between two probes while the recovery is sought
MIN_GAP_FRACTION = 0.05  # the learned recovery bracket is at least twice this share of the recovery wide
MIN_GAP_S = 0.01
UNKNOWN_RESET_S = 1.0  # an exhausted header bucket without a reset value is probed again after this
STALE_S = 0.5  # a reply whose reset falls this close to our last refill describes the period before it
INITIAL_IN_FLIGHT = 8  # calls sent before the first reply (and its headers) is back
STOP_POLL_S = 0.25  # how often queued calls look at the stop event
RATE_WINDOW_S = 60.0  # requests/min and tokens/min are measured over this


class RateLimited(LLMError):
    """The endpoint answered 429 or 503 (the backend did not retry it): the client waits and retries."""

    def __init__(self, message: str, status: int = 429, retry_after: float | None = None):
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class CallsStopped(BudgetExceeded):
    """The run was stopped (or its budget ran out) while this call waited for the rate limiter. It is never
    sent; the engine ends the step the way it does for a budget stop, without marking it failed."""


# -- reading headers --------------------------------------------------------------------------------------
_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|h|m|s)")


def parse_duration(text: str | None) -> float | None:
    """Seconds in OpenAI's reset format ("1s", "6m0s", "20ms", "1m30.5s", "2h3m4s") or a bare number of
    seconds ("0.5"); None when it cannot be read."""
    if text is None:
        return None
    text = text.strip().lower()
    if not text:
        return None
    try:
        value = float(text)
        return value if math.isfinite(value) and value >= 0 else None
    except ValueError:
        pass
    pos, total = 0, 0.0
    for m in _DURATION.finditer(text):
        if m.start() != pos:
            return None
        total += float(m.group(1)) * {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}[m.group(2)]
        pos = m.end()
    return total if pos == len(text) else None


def parse_retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds to wait from `retry-after-ms`, else `retry-after` (seconds or an HTTP date); None if absent."""
    value = headers.get("retry-after-ms")
    if value is not None:
        try:
            ms = float(value)
            if math.isfinite(ms) and ms >= 0:
                return ms / 1000.0
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - (now if now is not None else time.time()))


@dataclass
class HeaderLimit:
    """One resource as a reply described it: allowed per period, left now, seconds until full again."""

    limit: float
    remaining: float
    reset_s: float | None


def read_ratelimit_headers(headers: Mapping[str, str]) -> dict[str, HeaderLimit]:
    """{"requests": ..., "tokens": ...} from OpenAI-style x-ratelimit-* headers (either may be missing)."""
    found = {}
    for kind in ("requests", "tokens"):
        limit, remaining = headers.get(f"x-ratelimit-limit-{kind}"), headers.get(f"x-ratelimit-remaining-{kind}")
        if limit is None or remaining is None:
            continue
        try:
            lim, rem = float(limit), float(remaining)
        except ValueError:
            continue
        if lim > 0 and rem >= 0:
            found[kind] = HeaderLimit(lim, min(rem, lim), parse_duration(headers.get(f"x-ratelimit-reset-{kind}")))
    return found


def estimate_prompt_tokens(messages: list[dict[str, Any]]) -> int:
    """A cheap upper estimate of a prompt's tokens: UTF-8 bytes / 3 (English runs about 4 bytes a token,
    Korean 3) plus the chat framing. About 0.5 us against tiktoken's 90 us for a 1,300-character prompt;
    the reservation is corrected from the usage anyway."""
    total = 3
    for m in messages:
        content = m.get("content")
        text = content if isinstance(content, str) else str(content or "")
        total += len(text.encode("utf-8")) // 3 + 4
    return total


# -- buckets ------------------------------------------------------------------------------------------
class Bucket:
    """A budget of requests or tokens. Two ways to refill it:
    - a user cap: `per_minute` units a minute, continuously, holding at most one second's worth (so no
      60 s window ever sees much more than the cap);
    - the server's headers: `snapshot()` learns the limit, lowers the level to what the server says is left
      and remembers when it is full again; below the cost of a call, nothing until then.
    A call may take the bucket below zero (a call bigger than the bucket waits until it is full, then goes);
    the debt is paid back before the next call."""

    def __init__(self, name: str, per_minute: float | None = None, clock=time.monotonic):
        self.name = name
        self.clock = clock
        self.per_minute = per_minute
        self.rate = per_minute / 60.0 if per_minute else 0.0  # units a second (user caps)
        self.capacity: float | None = max(1.0, self.rate) if per_minute else None  # None: not known yet
        self.level = self.capacity or 0.0
        self.reset_at: float | None = None  # header buckets: when the server's bucket is full again
        self.refilled_at = -math.inf
        self.epoch = 0  # bumps when the level is set afresh (older reservations are then no longer in it)
        self._t = clock()

    @property
    def known(self) -> bool:
        return self.capacity is not None

    def _refill(self, now: float) -> None:
        if self.rate:
            self.level = min(self.capacity, self.level + self.rate * (now - self._t))
        elif self.reset_at is not None and now >= self.reset_at:
            self.level, self.reset_at, self.refilled_at = self.capacity, None, now
            self.epoch += 1
        self._t = now

    def wait_s(self, cost: float, now: float) -> float:
        """0 when a call of `cost` may go now, else how long until it might."""
        if self.capacity is None or cost <= 0:
            return 0.0
        self._refill(now)
        need = min(cost, self.capacity)  # a call bigger than the bucket goes when it is full
        if self.level >= need:
            return 0.0
        if self.rate:
            return (need - self.level) / self.rate
        if self.reset_at is None:  # exhausted, and the server did not say until when: probe again soon
            self.reset_at = now + UNKNOWN_RESET_S
        return max(0.0, self.reset_at - now)

    def take(self, cost: float) -> None:
        self.level -= cost

    def give_back(self, amount: float, epoch: int) -> None:
        """Correct a reservation (positive: it was too big) unless a snapshot has replaced it since."""
        if epoch == self.epoch and self.capacity is not None:
            self.level = min(self.capacity, self.level + amount)

    def snapshot(self, h: HeaderLimit, now: float) -> None:
        """Replies arrive out of order (a reply written before our last few calls arrived may be read after
        them), so a reply only ever lowers the level; only the reset we waited for raises it again."""
        self._refill(now)
        reset_at = now + h.reset_s if (h.reset_s is not None and h.remaining < h.limit) else None
        if self.capacity is None or h.limit != self.capacity:  # first sight, or the limit changed
            # At first sight the level holds minus what we took so far, some of it maybe not yet counted there.
            level = min(h.remaining, h.limit + self.level) if self.capacity is None else h.remaining
            self.capacity, self.level, self.reset_at = h.limit, level, reset_at
            self.epoch += 1
            return
        if reset_at is not None and reset_at <= self.refilled_at + STALE_S:
            return  # written before the reset we already counted: it describes the period before
        self.level = min(self.level, h.remaining)
        if reset_at is not None:
            self.reset_at = max(self.reset_at or 0.0, reset_at)


# -- the limiter ------------------------------------------------------------------------------------------
@dataclass
class Ticket:
    """One admitted call: what it reserved, under which concurrency generation and bucket epochs."""

    tokens: int
    generation: int
    epochs: tuple[int, ...]
    probe: bool = False  # the one call sent after a pause to see whether the server takes calls again
    released: bool = False


@dataclass
class _Waiter:
    tokens: int
    future: asyncio.Future = field(repr=False)


class RateLimiter:
    def __init__(self, concurrency: int, *, rpm: int | None = None, tpm: int | None = None,
                 adaptive: bool = True, stop_event: threading.Event | None = None, clock=time.monotonic):
        self.max_concurrency = max(1, int(concurrency))
        self.limit = float(self.max_concurrency)
        self.adaptive = adaptive  # False: the old fixed concurrency (bench/ratelimit.py compares them)
        self.stop_event = stop_event
        self.clock = clock
        self.user_requests = Bucket("requests (--rpm)", rpm, clock) if rpm else None
        self.user_tokens = Bucket("tokens (--tpm)", tpm, clock) if tpm else None
        self.header_requests = Bucket("requests (headers)", clock=clock)
        self.header_tokens = Bucket("tokens (headers)", clock=clock)
        self.in_flight = 0
        self.blocked_until = 0.0
        self.generation = 0  # bumps on every cut: a 429 of a call admitted before it is the same burst
        self.rate_limited = 0  # 429/503 answers seen
        self.cuts = 0
        self._step_s = FIRST_PROBE_S  # without Retry-After: the pause after the next failed probe
        self._streak = 0
        self._probe = False  # after a 429 burst: one call at a time until one succeeds
        # Without Retry-After: when the server took calls again, learned from the bursts (see _first_probe_s).
        self._burst_at: float | None = None  # the current burst's first 429 (None: no burst)
        self._hook_at: float | None = None  # a first 429 the HTTP hook saw before its call was released
        self._hook_blocked = 0.0  # blocked_until before that hook paused (undone if the 429 was stale)
        self._probe_sent = 0.0  # when the current probe was admitted
        self._failed_s: float | None = None  # how long after the burst the last failed probe of it went
        self._recovery_s: float | None = None  # how long after its burst's first 429 the last probe got through
        self._recovery_lo_s = 0.0  # ... and the last one that did not (or a guess below _recovery_s)
        self._planned: list[float] = []  # the next probes of this burst (seconds after its first 429)
        # ... and how many calls the server takes between two bursts (see _recovered).
        self._admitted = 0  # calls admitted so far
        self._cycle_from = 0  # _admitted when the current cycle (from a burst's successful probe) began
        self._cycle_end = math.inf  # past this many admissions: _past_cap calls at a time until a 429
        self._past_cap = 1
        self._burst_quota = 0  # calls the server took in the cycle that the current burst ended
        self._last_quota = math.inf  # ... and in the one before
        self._replied = False  # no reply seen yet: INITIAL_IN_FLIGHT at most
        self._queue: deque[_Waiter] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self._done: deque[tuple[float, int]] = deque()  # (time, tokens) of calls answered, for the rates
        self._done_tokens = 0
        self._started = clock()

    # -- which buckets apply ----------------------------------------------------------------------------
    def _buckets(self) -> tuple[Bucket, ...]:
        return tuple(b for b in (self.user_requests, self.user_tokens, self.header_requests, self.header_tokens)
                     if b is not None)

    @property
    def counts_tokens(self) -> bool:
        """Whether calls need a token estimate (a token bucket is in force); skipped otherwise, to save CPU."""
        return self.adaptive and (self.user_tokens is not None or self.header_tokens.known)

    def _cost(self, b: Bucket, tokens: int) -> float:
        return tokens if b in (self.user_tokens, self.header_tokens) else 1.0

    def _wait_s(self, tokens: int, now: float) -> float | None:
        """0: admit now; > 0: try again after this long; None: wait for a call in flight to end."""
        cap = 1 if self._probe else max(1, int(self.limit))
        if not self._replied and self.adaptive:
            cap = min(cap, INITIAL_IN_FLIGHT)
        if self._admitted >= self._cycle_end and self._past_cap < cap:
            cap = self._past_cap  # the server's quota for this cycle is used up (if it is what it was)
        if self.in_flight >= cap:
            return None
        if not self.adaptive:
            return 0.0
        wait = self.blocked_until - now
        for b in self._buckets():
            wait = max(wait, b.wait_s(self._cost(b, tokens), now))
        return max(0.0, wait)

    def _admit(self, tokens: int) -> Ticket:
        self.in_flight += 1
        self._admitted += 1
        buckets = self._buckets() if self.adaptive else ()
        for b in buckets:
            b.take(self._cost(b, tokens))
        if self._probe:
            self._probe_sent = self.clock()
        return Ticket(tokens, self.generation, tuple(b.epoch for b in buckets), probe=self._probe)

    # -- admission ------------------------------------------------------------------------------------
    async def acquire(self, tokens: int = 0) -> Ticket:
        self._check_stop()
        if not self._queue and self._wait_s(tokens, self.clock()) == 0.0:
            return self._admit(tokens)  # the common case: no queue, room now
        waiter = _Waiter(tokens, asyncio.get_running_loop().create_future())
        self._queue.append(waiter)
        self._pump()
        try:
            return await waiter.future
        except asyncio.CancelledError:
            fut = waiter.future
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                self.release(fut.result(), outcome="cancelled")  # admitted just as it was cancelled
            else:
                try:
                    self._queue.remove(waiter)
                except ValueError:
                    pass
                self._pump()
            raise

    def _check_stop(self) -> None:
        if self.stop_event is not None and self.stop_event.is_set():
            raise CallsStopped("The run was stopped while calls waited for the rate limiter.")

    def abort(self, error: BaseException) -> None:
        """Fail every queued call with `error` (the budget ran out, the run stops); calls in flight go on."""
        while self._queue:
            w = self._queue.popleft()
            if not w.future.done():
                w.future.set_exception(error)
        self._cancel_timer()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _pump(self) -> None:
        """Admit queued calls in order while there is room; else wake up when there may be."""
        self._cancel_timer()
        if self.stop_event is not None and self.stop_event.is_set():
            self.abort(CallsStopped("The run was stopped while calls waited for the rate limiter."))
            return
        now = self.clock()
        while self._queue:
            w = self._queue[0]
            if w.future.done():  # cancelled while queued
                self._queue.popleft()
                continue
            wait = self._wait_s(w.tokens, now)
            if wait == 0.0:
                self._queue.popleft()
                w.future.set_result(self._admit(w.tokens))
                continue
            # Blocked by time (wait > 0) or by the calls in flight (None: a release pumps again). Either
            # way look at the stop event now and then.
            delay = wait if wait is not None else math.inf
            if self.stop_event is not None:
                delay = min(delay, STOP_POLL_S)
            if delay < math.inf:
                self._timer = asyncio.get_running_loop().call_later(max(delay, 0.001), self._pump)
            return

    # -- outcomes -------------------------------------------------------------------------------------
    def release(self, ticket: Ticket, *, outcome: str = "ok", used_tokens: int | None = None,
                retry_after: float | None = None) -> None:
        """A call ended: "ok" (with the tokens it used), "rate_limited" (429/503), "error" or "cancelled"."""
        if ticket.released:
            return
        ticket.released = True
        self.in_flight -= 1
        self._replied = self._replied or outcome != "cancelled"
        now = self.clock()
        if self.adaptive:
            buckets = self._buckets()
            for b, epoch in zip(buckets, ticket.epochs):
                if outcome == "ok" and b in (self.user_tokens, self.header_tokens) and used_tokens is not None:
                    b.give_back(ticket.tokens - used_tokens, epoch)
                elif outcome != "ok":  # never sent, refused, or failed: give the reservation back
                    b.give_back(self._cost(b, ticket.tokens), epoch)
            if outcome == "rate_limited":
                self._rate_limited(ticket, retry_after, now)
            elif ticket.generation == self.generation:
                if ticket.probe:
                    self._recovered(now if outcome == "ok" else None)
                self._probe = False  # a call sent since the last cut got through (or failed otherwise)
                if outcome == "ok":
                    self._success()
        if outcome == "ok":
            used = used_tokens if used_tokens is not None else ticket.tokens
            self._done.append((now, used))
            self._done_tokens += used
            if now - self._done[0][0] > RATE_WINDOW_S:
                self._prune(now)
        if self._queue:
            self._pump()

    def _success(self) -> None:
        """A call admitted since the last cut succeeded (older ones say nothing about the new limit)."""
        self._streak += 1
        if self._admitted > self._cycle_end:  # a call past the quota got through: it was low, speed up again
            self._past_cap = min(2 * self._past_cap, self.max_concurrency)
        if self._streak >= int(self.limit):  # a run of successes as long as the limit: one more
            self._streak = 0
            self.limit = min(float(self.max_concurrency), self.limit + 1.0)

    def _rate_limited(self, ticket: Ticket, retry_after: float | None, now: float) -> None:
        self.rate_limited += 1
        self._streak = 0
        # Once per burst: calls admitted before the last cut do not cut again, nor does a failed probe (the
        # server is still full from the same burst: it only makes the pause longer).
        new_burst = ticket.generation == self.generation and not ticket.probe
        hook_at, self._hook_at = self._hook_at, None
        if new_burst:
            self.limit = max(1.0, self.limit * DECREASE)
            self.generation += 1
            self.cuts += 1
            self._probe = True
            self._burst_at = min(now, hook_at) if hook_at is not None else now
            self._failed_s = None
            self._burst_quota = self._admitted - self._cycle_from - 1
        elif not ticket.probe and ticket.generation == self.generation - 1:
            self._burst_quota -= 1  # another call of the cycle the burst ended: the server did not take it
        if not new_burst and not ticket.probe and not self._probe and hook_at is not None:
            # A late 429 of a call sent before the last burst ended: the hook's pause was for nothing.
            self.blocked_until = self._hook_blocked
            return
        if retry_after is not None:
            pause = retry_after
        elif new_burst:
            pause = self._burst_at + self._first_probe_s() - now
        elif ticket.probe and self._burst_at is not None:
            pause = self._next_probe_s() - (now - self._burst_at)
        else:
            pause = 0.0
        self.blocked_until = max(self.blocked_until, now + pause)

    # Without Retry-After the limiter cannot know when the server's window ends. Doubling blindly overshoots
    # it (a window's quota goes unused while we wait), and probing often costs a 429 a probe. So we learn
    # from the bursts how long after its first 429 the server took calls again: a fixed window (reset at the
    # window's end), a sliding one (the first call of the last cycle ages out) and a leaky bucket (nearly at
    # once) each give a recovery time that changes little from one burst to the next, since we fill the
    # server the same way each time. Anchored to the burst, not the clock, so nothing assumes a window's
    # phase. The first time, probes go 0.25 s after the burst and then 1.3 times as long each (a few 429s,
    # an overshoot of at most 30 % of the pause, where doubling costs up to all of it). That brackets the
    # recovery: (last failed probe, first one through]. The next burst probes at the bracket's low end, its
    # middle, its high end, then in steps growing 1.3 times (the server got slower): starting low matters
    # for a fixed window, where an overshoot this time moves the next burst later into the window and so
    # shortens the next recovery by as much. A first probe through widens the bracket downwards (the server
    # may be quicker still); it is kept at least 10 % of the recovery wide. At most two extra 429s a burst.
    def _first_probe_s(self) -> float:
        """Seconds after a new burst's first 429 when its first probe goes; plans the ones after it."""
        if self._recovery_s is None:
            self._planned, self._step_s = [], FIRST_PROBE_S * (PROBE_GROWTH - 1)
            return FIRST_PROBE_S
        lo, hi = self._recovery_lo_s, self._recovery_s
        self._planned, self._step_s = [(lo + hi) / 2, hi], max(MIN_GAP_S, (hi - lo) / 2)
        return lo

    def _next_probe_s(self) -> float:
        """A probe failed: seconds after the burst's first 429 when the next one goes."""
        failed = self._failed_s = max(0.0, self._probe_sent - self._burst_at)
        while self._planned and self._planned[0] <= failed + 1e-3:
            self._planned.pop(0)
        if self._planned:
            return self._planned.pop(0)
        step, self._step_s = self._step_s, self._step_s * PROBE_GROWTH
        return failed + min(step, MAX_COOLDOWN_S)

    def _recovered(self, now: float | None) -> None:
        """The probe of a burst ended: learn when the server took calls again (if it succeeded)."""
        if self._burst_at is None:
            return
        if now is not None:
            took = max(0.0, self._probe_sent - self._burst_at)
            if self._failed_s is not None and self._failed_s < took:
                lo = self._failed_s
            elif self._recovery_s is not None:  # the first probe got through: maybe sooner still
                lo = took - (self._recovery_s - self._recovery_lo_s)
            else:  # nothing learned yet and the first probe got through
                lo = took / 2
            width = max(MIN_GAP_S, 2 * MIN_GAP_FRACTION * took)
            self._recovery_s, self._recovery_lo_s = took, max(0.0, min(lo, took - width))
        # Count the server's quota, too: the calls it took between two bursts, the lower of the last two
        # counts (a cycle that ran across two windows counts both). In this cycle that many go as usual,
        # then one at a time (doubling with each that gets through, if the quota grew): at a fixed or sliding
        # window's end the first call over costs one 429 instead of a 429 for every call sent before the
        # first 429 came back.
        self._cycle_from = self._admitted - 1  # the probe is this cycle's first call
        quota, self._last_quota = min(self._burst_quota, self._last_quota), self._burst_quota
        ok = now is not None and quota > 0
        self._cycle_end = self._cycle_from + quota if ok else math.inf
        self._past_cap = 1
        self._burst_at = self._failed_s = None

    def pause(self, retry_after: float | None) -> None:
        """A 429/503 just arrived (seen in the HTTP hook, before the call's own error surfaces): stop
        admitting calls at once; the cut and the probe follow when that call is released. During a burst
        (a probe or calls sent before it) the release decides."""
        if not self.adaptive:
            return
        now = self.clock()
        if retry_after is not None:
            self.blocked_until = max(self.blocked_until, now + retry_after)
        elif not self._probe and self._hook_at is None:
            self._hook_at, self._hook_blocked = now, self.blocked_until
            first = self._recovery_lo_s if self._recovery_s is not None else FIRST_PROBE_S
            self.blocked_until = max(self.blocked_until, now + max(0.0, first))

    def observe_headers(self, headers: Mapping[str, str]) -> None:
        """A reply's x-ratelimit-* headers (any reply, retries included) replace our estimate."""
        if not self.adaptive:
            return
        found = read_ratelimit_headers(headers)
        if not found:
            return
        now = self.clock()
        if "requests" in found:
            self.header_requests.snapshot(found["requests"], now)
        if "tokens" in found:
            self.header_tokens.snapshot(found["tokens"], now)
        if self._queue:
            self._pump()

    # -- what to show ---------------------------------------------------------------------------------
    def _prune(self, now: float) -> None:
        while self._done and now - self._done[0][0] > RATE_WINDOW_S:
            self._done_tokens -= self._done.popleft()[1]

    def state(self) -> dict[str, Any]:
        """Numbers for the progress line and the Runs page."""
        now = self.clock()
        self._prune(now)
        span = min(RATE_WINDOW_S, max(now - self._started, 1.0))
        headers = self.header_requests.known or self.header_tokens.known
        s: dict[str, Any] = {
            "mode": "fixed" if not self.adaptive else ("headers" if headers else "adaptive"),
            "concurrency": max(1, int(self.limit)), "max_concurrency": self.max_concurrency,
            "in_flight": self.in_flight, "waiting": len(self._queue),
            "requests_per_min": len(self._done) * 60.0 / span,
            "tokens_per_min": self._done_tokens * 60.0 / span,
            "rate_limited": self.rate_limited, "cuts": self.cuts,
            "cooldown_s": max(0.0, self.blocked_until - now),
            "rpm_cap": self.user_requests.per_minute if self.user_requests else None,
            "tpm_cap": self.user_tokens.per_minute if self.user_tokens else None,
        }
        for key, b in (("requests", self.header_requests), ("tokens", self.header_tokens)):
            if b.known:
                s[f"header_{key}_limit"] = b.capacity
                s[f"header_{key}_remaining"] = max(0.0, b.level)
                s[f"header_{key}_reset_s"] = max(0.0, b.reset_at - now) if b.reset_at is not None else 0.0
        return s


def describe(state: dict[str, Any] | None) -> str:
    """One line: rates and the limit in force, e.g. "312 req/min · 41k tok/min · concurrency 23/64 (adaptive)"."""
    if not state:
        return ""
    parts = [f"{state['requests_per_min']:.0f} req/min", f"{_short(state['tokens_per_min'])} tok/min"]
    limits = []
    if state.get("header_requests_limit"):
        limits.append(f"request limit {state['header_requests_limit']:.0f} (headers)")
    if state.get("header_tokens_limit"):
        limits.append(f"token limit {_short(state['header_tokens_limit'])} (headers)")
    if state.get("rpm_cap"):
        limits.append(f"RPM cap {state['rpm_cap']:g}")
    if state.get("tpm_cap"):
        limits.append(f"TPM cap {_short(state['tpm_cap'])}")
    label = {"fixed": "fixed", "headers": "adaptive", "adaptive": "adaptive"}[state["mode"]]
    limits.append(f"concurrency {state['concurrency']}/{state['max_concurrency']} ({label})")
    if state.get("cooldown_s", 0) > 0.05:
        limits.append(f"paused {state['cooldown_s']:.1f}s after a 429")
    return " · ".join(parts + limits)


def _short(n: float) -> str:
    return f"{n / 1000:.1f}k" if n >= 10_000 else f"{n:.0f}"
