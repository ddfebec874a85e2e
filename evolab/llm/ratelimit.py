"""Being a good client: pace requests and tokens by what the server says, or adapt when it says nothing.

One `RateLimiter` per client admits each call (FIFO) when all of these allow it:
- **Header pacing** (announced limits): OpenAI-style `x-ratelimit-limit/remaining/reset-*` headers announce a
  budget per period (OpenAI's are per minute, and "may be quantized": enforced over shorter windows). A `Pacer`
  per resource spends it as a steady rate (limit / period) with a burst of a few calls at most, whatever
  `remaining` says. The period is read from the headers: a continuous refill's reset is (limit - remaining) /
  limit of it (capped at a minute), and a fixed window shows itself when `remaining` jumps up while the reset
  moves a whole window later. A 429 while paced means the limit is enforced over shorter windows than announced:
  the burst drops to one call and the rate to 97 % of what it was (once per round of calls, not below 70 %).
- **Header buckets** (as curator does): `remaining` and the reset the server named stay a floor under the pacing
  (another client may spend the same quota): below the cost of a call we wait for the reset.
- **Concurrency** without headers: slow start from 8 calls (one more per success, but at most a quarter, and at
  least 4, past the most calls that got through at once) up to `--concurrency`. A 429/503 is read by what it says
  about the server:
  - *a concurrency cap* (TGI's max_concurrent_requests, an Ollama queue, a proxy before vLLM): calls sent after it
    get through, or none got through well above its level. The first one puts the limit at the most calls that
    got through at once; after that the limit is steered by the share of calls refused: one less a refused call
    (one sent at a level the limit is already under cuts nothing more), 0.01 more a call through, one more a round
    trip while none of the last 200 calls was refused. It settles where about 1 % is refused, i.e. where the
    server is full, however late a busy client reads its replies (our count of calls in flight runs ahead of the
    server's by the replies not yet read, so the level a refusal came at is no measure of the server's cap), and
    follows the server when it frees up. Only the refused call is retried (after its Retry-After, if any):
    nothing pauses the calls the server is taking.
  - *latency*: once the server refused a call while calls waited there (the round trips then longer than the
    lowest by more than 4 calls' worth), the average round trip of each round of calls is compared with the
    lowest seen (Vegas): a queue of more than 4 calls at the server cuts the limit to where the queue would be 2
    (a cut reads only calls sent after the last one), under 2 lets it grow by one a round trip. So a server that
    slows down before it refuses is held near the concurrency it serves at full speed, not at the edge of its
    queue. A server that refused while the round trips were as short as ever
    does not queue: longer round trips are then the client's own late reading, and latency cuts nothing.
  - *a closed window* (a rate limit without headers): calls got through well above the refused level (by 2, or an
    eighth) since the last refusal, or four refusals came in a row, each of a call sent after the first, at levels
    that had got through, none through since (the cuts they made for a cap are undone). Then all calls pause and
    one probe goes first, as below.
- **A cooldown** after a closed window's 429/503: Retry-After / retry-after-ms when the server sends one. Without
  it the limiter learns from the bursts when the server takes calls again (see `_first_probe_s`): the first time
  it probes 0.25 s after the burst, then 1.3 times as long each time (at most 30 s apart); later, from a
  little before the recovery time the last burst showed. Every call waits it out, not just the failed one, and
  then one call goes first (a probe): the others follow when it succeeds (so a server still full costs one
  429, not a whole window of them). It also learns how many calls the server took between the last two
  bursts: after that many, calls go one at a time (doubling with each success) until the 429 that ends
  the window, instead of a 429 for every call sent before the first one came back.
- **User caps** `--rpm` / `--tpm`: token buckets refilled continuously, holding one second's worth.

A call reserves its tokens as an estimate of its prompt plus `max_tokens`; the usage returned corrects the
reservation (a fresher header snapshot supersedes it). A call bigger than a bucket goes when the bucket is
full, so nothing waits forever; every wait is for a finite time or for a call in flight to end; a set stop
event or `abort()` fails the queued calls at once. `state()` says what the limiter settled on and why
(headers, refusals, latency); `describe()` and `describe_settled()` put it in words for the CLI and the Runs page.
"""
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
# Header pacing
DEFAULT_PERIOD_S = 60.0  # OpenAI's limits are per minute; the headers may show a shorter period, never a longer one
PACE_BURST_S = 0.05  # a pacer holds this long's worth of its rate (at least one call): a small burst at most
PACE_SMOOTHING = 0.97  # a 429 while paced: the rate goes to this share of what it was...
PACE_MIN_SHARE = 0.7  # ... never below this share of the announced rate
WINDOW_JUMP_S = 0.25  # a reset this much later than time explains, with more left: a fixed window began
# Concurrency caps and latency
SLOW_START_STEP = 4  # slow start goes at most a quarter, and at least this many, past the most calls through at once
REFUSED_TARGET = 0.01  # a concurrency cap: the share of calls refused that the limit settles at (see _cap_refusal)
RECENT_CALLS = 200  # ... counted over this many calls answered; none refused among them: grow one a round trip
WINDOW_EVIDENCE = 3  # calls through well above a level since the last refusal: a refusal there is a closed window
WINDOW_MARGIN = 2  # ... "well above": by this many, or an eighth
WINDOW_IN_ROW = 4  # ... as are this many refusals in a row: one, then calls sent after it, none of which got through
VEGAS_ALPHA = 2.0  # calls queued at the server (by the latency) under which the limit may grow...
VEGAS_BETA = 4.0  # ... and over which it is cut back to where the queue would be VEGAS_ALPHA
BASE_RTT_ROUNDS = 200  # the lowest round-trip average is taken over this many rounds of calls


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
        if reset_at is not None and self.reset_at is not None and reset_at < self.reset_at - STALE_S:
            # Full sooner than a later reply said: a reply of the window before, read late (a fresh one would say
            # so only with more left, which is never believed anyway).
            return
        self.level = min(self.level, h.remaining)
        if reset_at is not None:
            self.reset_at = max(self.reset_at or 0.0, reset_at)


class Pacer(Bucket):
    """An announced limit spent evenly: `limit` per `period_s`, as a continuous rate with a small burst, however
    much `remaining` says is left (a per-minute limit may be enforced per second). The period comes from the
    headers (see `observe`); `smooth()` slows it after a 429 showed the limit is enforced over shorter windows."""

    def __init__(self, name: str, clock=time.monotonic):
        super().__init__(name, clock=clock)
        self.limit: float | None = None
        self.share = 1.0  # of the announced rate; lowered by 429s while paced
        self.single = False  # a 429 while paced: no burst any more, one call at a time
        self.smoothed = 0  # how many times a 429 slowed it
        self._implied_s = 0.0  # the longest period a continuous refill's reset implied (capped at a minute)
        self.window_s: float | None = None  # a fixed window's length, once a window boundary was seen
        self._latest: tuple[float, float, float] | None = None  # (reset at, remaining, seen at) of the latest reset

    @property
    def period_s(self) -> float:
        return self.window_s or self._implied_s or DEFAULT_PERIOD_S

    @property
    def per_s(self) -> float:
        return self.share * (self.limit or 0.0) / self.period_s

    def observe(self, h: HeaderLimit, now: float) -> None:
        """Learn the announced limit and its period from one reply's headers.
        - A continuous refill (OpenAI) names the time until the bucket is full: reset = used / limit * period,
          so period = reset * limit / used. The longest seen counts (a fixed window's early replies imply more
          than its length), capped at DEFAULT_PERIOD_S.
        - A fixed window's reset moves by a whole window at once while `remaining` jumps up; a continuous
          refill's never moves later than time explains when more is left. The shortest such jump is the window."""
        if self.limit != h.limit:
            self.limit, self.share, self.single = h.limit, 1.0, False
        if h.reset_s is not None and h.remaining < h.limit:
            self._implied_s = max(self._implied_s, min(DEFAULT_PERIOD_S, h.reset_s * h.limit / (h.limit - h.remaining)))
            reset_at = now + h.reset_s
            latest = self._latest
            if latest is not None and reset_at > latest[0] + (now - latest[2]) + WINDOW_JUMP_S and h.remaining > latest[1]:
                self.window_s = min(self.window_s or math.inf, reset_at - latest[0])
            if latest is None or reset_at >= latest[0]:
                self._latest = (reset_at, h.remaining, now)
        self._retune(now)

    def smooth(self, now: float) -> None:
        """A 429 while paced: the limit is enforced over shorter windows than announced. Slow down a little and
        send one call at a time."""
        self.share = max(PACE_MIN_SHARE, self.share * PACE_SMOOTHING)
        self.single = True
        self.smoothed += 1
        self._retune(now)

    def _retune(self, now: float) -> None:
        self._refill(now)
        self.rate = self.per_s
        self.per_minute = self.rate * 60.0
        burst = 1.0 if self.single else max(1.0, self.rate * PACE_BURST_S)
        if self.capacity is None:
            self.level = burst
        self.capacity = burst
        self.level = min(self.level, burst)


# -- the limiter ------------------------------------------------------------------------------------------
@dataclass
class Ticket:
    """One admitted call: what it reserved, under which concurrency generation and bucket epochs."""

    tokens: int
    generation: int
    epochs: tuple[int, ...]
    probe: bool = False  # the one call sent after a pause to see whether the server takes calls again
    released: bool = False
    seq: int = 0  # admission order
    level: int = 0  # calls in flight once it was admitted (itself included)
    sent_at: float = 0.0
    retry_at: float = 0.0  # a refused call of a full server: when it may be sent again (its Retry-After)


@dataclass
class _Waiter:
    tokens: int
    future: asyncio.Future = field(repr=False)


class RateLimiter:
    def __init__(self, concurrency: int, *, rpm: int | None = None, tpm: int | None = None,
                 adaptive: bool = True, stop_event: threading.Event | None = None, clock=time.monotonic):
        self.max_concurrency = max(1, int(concurrency))
        # Slow start: a few calls until replies come back, one more per success until the first refusal.
        self.limit = float(self.max_concurrency if not adaptive else min(self.max_concurrency, INITIAL_IN_FLIGHT))
        self._slow_start = True
        self.adaptive = adaptive  # False: the old fixed concurrency (bench/ratelimit.py compares them)
        self.stop_event = stop_event
        self.clock = clock
        self.user_requests = Bucket("requests (--rpm)", rpm, clock) if rpm else None
        self.user_tokens = Bucket("tokens (--tpm)", tpm, clock) if tpm else None
        self.header_requests = Bucket("requests (headers)", clock=clock)
        self.header_tokens = Bucket("tokens (headers)", clock=clock)
        self.pace_requests = Pacer("requests (paced)", clock=clock)
        self.pace_tokens = Pacer("tokens (paced)", clock=clock)
        # A concurrency cap (see the module doc): the level (calls in flight by our count) of the last refusal,
        # and the calls answered lately, refused or not, whose refused share the limit is steered by.
        self.ceiling: int | None = None
        self._recent: deque[bool] = deque()
        self._recent_refused = 0
        self._in_row = 0  # refusals read as a cap in a row: the first, then calls sent after it, none through since
        self._streak_seq = -1  # admissions when the first of them was read
        self._cut_seq = -1  # admissions when the last cut came
        self._top_ok = 0  # the most calls in flight a call that got through went with
        self._queued_at_refusal = 0.0  # calls waiting at the server (by the latency) when it last refused
        self._latency_cut_seq = -1  # admissions when the latency last cut the limit
        self._before_cap: tuple[float, int | None] = (self.limit, None)  # limit, ceiling before the refusals in a row
        self._ok_levels: dict[int, int] = {}  # calls through since the last refusal, by the level they went at
        self._hold = False  # a 429/503 was seen in the HTTP hook: admit nothing until its call is released
        self.why = "start"  # what set the limit last: start, headers, refusals, window, latency
        self.refusals_by_kind = {"cap": 0, "window": 0, "headers": 0}
        # Latency (Vegas): round trips of the current round of calls, the rounds' averages, the lowest.
        self._round_rtts: list[float] = []
        self.rtt_s: float | None = None
        self._rtt_rounds: deque[float] = deque(maxlen=BASE_RTT_ROUNDS)
        self.base_rtt_s: float | None = None
        self._queue_ok = True  # the latency says there is room for more calls
        self._last_kind = ""  # how the last refusal was read: "cap" or "window"
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
        return tuple(b for b in (self.user_requests, self.user_tokens, self.header_requests, self.header_tokens,
                                 self.pace_requests, self.pace_tokens) if b is not None)

    @property
    def counts_tokens(self) -> bool:
        """Whether calls need a token estimate (a token bucket is in force); skipped otherwise, to save CPU."""
        return self.adaptive and (self.user_tokens is not None or self.header_tokens.known)

    def _cost(self, b: Bucket, tokens: int) -> float:
        return tokens if b in (self.user_tokens, self.header_tokens, self.pace_tokens) else 1.0

    @property
    def paced(self) -> bool:
        return self.pace_requests.known or self.pace_tokens.known

    def _wait_s(self, tokens: int, now: float) -> float | None:
        """0: admit now; > 0: try again after this long; None: wait for a call in flight to end."""
        if self._hold and self.adaptive:
            return None  # the release of the refused call decides (and pumps)
        cap = 1 if self._probe else max(1, int(self.limit))
        if not self._replied and self.adaptive:
            cap = min(cap, INITIAL_IN_FLIGHT)
        if self._admitted >= self._cycle_end and self._past_cap < cap:
            cap = self._past_cap  # the server's quota for this cycle is used up (if it is what it was)
        if self._slow_start and self._replied and self.adaptive:
            # Slow start doubles each round trip, and the replies of a round come back together: without a bound
            # the calls past a cap would all go before the first refusal is read. A quarter more than the most
            # that got through at once (at least SLOW_START_STEP more) overshoots a cap by that much at most.
            cap = min(cap, max(INITIAL_IN_FLIGHT, self._top_ok) + max(SLOW_START_STEP, self._top_ok // 4))
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
        now = self.clock()
        if self._probe:
            self._probe_sent = now
        return Ticket(tokens, self.generation, tuple(b.epoch for b in buckets), probe=self._probe,
                      seq=self._admitted, level=self.in_flight, sent_at=now)

    # -- admission ------------------------------------------------------------------------------------
    async def acquire(self, tokens: int = 0, retry_of: Ticket | None = None) -> Ticket:
        """Wait for room for a call (`retry_of`: the refused call it retries, which may have to wait first)."""
        self._check_stop()
        while retry_of is not None and retry_of.retry_at > self.clock():  # its own Retry-After, not everyone's
            await asyncio.sleep(min(STOP_POLL_S, retry_of.retry_at - self.clock()))
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
        self._hold = False
        self._replied = self._replied or outcome != "cancelled"
        now = self.clock()
        if self.adaptive:
            buckets = self._buckets()
            token_buckets = (self.user_tokens, self.header_tokens, self.pace_tokens)
            for b, epoch in zip(buckets, ticket.epochs):
                if outcome == "ok" and b in token_buckets and used_tokens is not None:
                    b.give_back(ticket.tokens - used_tokens, epoch)
                elif b is self.pace_requests and outcome == "rate_limited":
                    pass  # the pace counts sends: a refused call was sent, the next one keeps its distance
                elif outcome != "ok":  # never sent, refused, or failed: give the reservation back
                    b.give_back(self._cost(b, ticket.tokens), epoch)
            if outcome in ("ok", "rate_limited") and not self.paced:
                self._note(refused=outcome == "rate_limited")
            if outcome == "rate_limited":
                self._rate_limited(ticket, retry_after, now)
            else:
                if outcome == "ok":
                    self._got_through(ticket, now)
                if ticket.generation == self.generation:
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

    def _note(self, refused: bool) -> None:
        """One call answered: the last RECENT_CALLS calls' refused share steers the limit under a cap."""
        self._recent.append(refused)
        self._recent_refused += refused
        if len(self._recent) > RECENT_CALLS:
            self._recent_refused -= self._recent.popleft()

    def _got_through(self, ticket: Ticket, now: float) -> None:
        """Any call that succeeded: the level it went at, and its round trip (for the latency)."""
        self._top_ok = max(self._top_ok, ticket.level)
        if ticket.seq > self._cut_seq:  # sent after the last cut: what it says holds now
            self._ok_levels[ticket.level] = self._ok_levels.get(ticket.level, 0) + 1
        if ticket.seq > self._streak_seq:
            self._in_row = 0  # a call sent after the first refusal in a row got through: the server is not closed
        if ticket.seq <= self._latency_cut_seq:
            return  # sent before the last cut for latency: its round trip tells of the queue before the cut
        self._round_rtts.append(now - ticket.sent_at)
        if len(self._round_rtts) < max(4, int(self.limit)):
            return
        # A round of calls is back: compare its average round trip with the lowest round seen (Vegas).
        self.rtt_s = sum(self._round_rtts) / len(self._round_rtts)
        self._round_rtts.clear()
        self._rtt_rounds.append(self.rtt_s)
        self.base_rtt_s = min(self._rtt_rounds)
        if self.ceiling is None or self.paced or self.rtt_s <= 0:
            return  # latency is watched only once a refusal showed the server takes a limited number at once
        if self._queued_at_refusal <= VEGAS_BETA:
            # When the server last refused, calls were not waiting there (the round trips were as short as ever):
            # it refuses rather than lets calls wait, so a longer round trip is this client reading its replies
            # late (a busy machine), not a queue at the server.
            self._queue_ok = True
            return
        queued = self.limit * (1.0 - self.base_rtt_s / self.rtt_s)
        self._queue_ok = queued < VEGAS_ALPHA
        if queued > VEGAS_BETA:  # calls wait at the server: cut to where about VEGAS_ALPHA would wait
            target = max(1.0, self.limit / 2, self.limit * self.base_rtt_s / self.rtt_s + VEGAS_ALPHA)
            if target < self.limit:
                self.limit, self.why, self._slow_start, self._streak = target, "latency", False, 0
                self._latency_cut_seq = self._admitted

    def _success(self) -> None:
        """A call admitted since the last cut succeeded (older ones say nothing about the new limit)."""
        self._streak += 1
        if self._admitted > self._cycle_end:  # a call past the quota got through: it was low, speed up again
            self._past_cap = min(2 * self._past_cap, self.max_concurrency)
        if not self._queue_ok:
            return  # the latency says calls already wait at the server: hold
        if self.ceiling is not None and not self._slow_start:
            # Under a concurrency cap: one more a round trip while none of the recent calls was refused, else
            # REFUSED_TARGET more a call, against one less a refused call (_cap_refusal): the limit settles where
            # that share of calls is refused, i.e. where the server is full, however late this client reads its
            # replies (our count of calls in flight runs ahead of the server's by the replies not yet read).
            # (Held by the latency, far under the refusals: one more a round trip while the latency allows it.)
            fast = self._recent_refused == 0 or self.why == "latency"
            step = 1.0 / max(1.0, self.limit) if fast else REFUSED_TARGET
            self.limit = min(float(self.max_concurrency), self.limit + step)
            return
        if not self._slow_start and self._streak < int(self.limit):
            return  # one more after a run of successes as long as the limit (slow start: one more per success)
        self._streak = 0
        self.limit = min(float(self.max_concurrency), self.limit + 1.0)

    def _window_evidence(self, level: int) -> bool:
        """Did calls get through at a higher level since the last refusal? Then the server is not refusing how many
        we send at once but when we send them: a closed window. Higher by a margin (2, or an eighth): our count of
        calls in flight runs ahead of the server's by the replies not yet read, so a full server may refuse a call
        at a level a little under that of calls it took."""
        above = level + max(WINDOW_MARGIN, level // 8)
        return sum(n for lv, n in self._ok_levels.items() if lv >= above) >= WINDOW_EVIDENCE

    def _rate_limited(self, ticket: Ticket, retry_after: float | None, now: float) -> None:
        self.rate_limited += 1
        self._streak = 0
        hook_at, self._hook_at = self._hook_at, None
        if self.paced:  # a 429 under announced limits: they are enforced over shorter windows than announced
            self.refusals_by_kind["headers"] += 1
            if ticket.generation == self.generation:  # once per round of calls sent at the old pace
                self.generation += 1
                for pacer in (self.pace_requests, self.pace_tokens):
                    if pacer.known:
                        pacer.smooth(now)
                self.why = "headers"
            if retry_after is not None:
                self.blocked_until = max(self.blocked_until, now + retry_after)
            return
        # Once per burst: calls admitted before the last cut do not cut again, nor does a failed probe (the
        # server is still full from the same burst: it only makes the pause longer).
        new_burst = ticket.generation == self.generation and not ticket.probe
        if new_burst:
            # A full server (a concurrency cap) refuses the calls past its cap and takes the others; a closed
            # window refuses every call, at any level: calls went through well above this one since the last
            # refusal, or refusals at a cap came in a row, each of a call sent after the cut before it.
            in_row = self._last_kind == "cap" and ticket.seq > self._streak_seq and self._in_row + 1 >= WINDOW_IN_ROW
            if in_row:  # the refusals in a row were a closed window all along, not a cap: undo their cuts (not
                # past the most calls that ever got through at once: a slow start's limit may be far above that)
                before, self.ceiling = self._before_cap
                self.limit = max(self.limit, min(before, float(self._top_ok)))
            elif not self._window_evidence(ticket.level):
                self._cap_refusal(ticket, retry_after, now)
                return
        self._last_kind = "window"
        if new_burst:
            self._in_row, self._cut_seq = 0, self._admitted
            self.refusals_by_kind["window"] += 1
            self.limit = max(1.0, self.limit * DECREASE)
            self.generation += 1
            self.cuts += 1
            self._slow_start = False
            self._ok_levels.clear()
            self.why = "window"
            self._probe = True
            self._burst_at = min(now, hook_at) if hook_at is not None else now
            self._failed_s = None
            self._burst_quota = self._admitted - self._cycle_from - 1
        elif not ticket.probe and ticket.generation == self.generation - 1:
            self._burst_quota -= 1  # another call of the cycle the burst ended: the server did not take it
        if not new_burst and not ticket.probe and not self._probe and hook_at is not None:
            return  # a late 429 of a call sent before the last burst ended: no new pause
        if retry_after is not None:
            pause = retry_after
        elif new_burst:
            pause = self._burst_at + self._first_probe_s() - now
        elif ticket.probe and self._burst_at is not None:
            pause = self._next_probe_s() - (now - self._burst_at)
        else:
            pause = 0.0
        self.blocked_until = max(self.blocked_until, now + pause)

    def _cap_refusal(self, ticket: Ticket, retry_after: float | None, now: float) -> None:
        """The server refused a call for having too many at once. The first time (it ends the slow start) the
        limit goes to the most calls that got through at once, or one below the level refused if that is lower;
        later, one less a refused call, against REFUSED_TARGET more a call through (see _success): the limit
        settles where that share is refused. A call sent at a level the limit is already under (before a cut)
        cuts nothing more. Nothing pauses; only this call waits (its Retry-After)."""
        self.refusals_by_kind["cap"] += 1
        self._last_kind = "cap"
        ceiling_was, self.ceiling = self.ceiling, ticket.level
        self.why = "refusals"
        # Calls waiting at the server when it refused, by the latency (of the round under way, if far enough along).
        rtt = sum(self._round_rtts) / len(self._round_rtts) if len(self._round_rtts) >= 4 else self.rtt_s
        slower = 1.0 - self.base_rtt_s / rtt if rtt and self.base_rtt_s else 0.0
        self._queued_at_refusal = ticket.level * max(0.0, slower)
        if retry_after is not None:
            ticket.retry_at = now + retry_after
        if self._in_row == 0:  # the first refusal in a row
            self._in_row, self._streak_seq = 1, self._admitted
            self._before_cap = (self.limit, ceiling_was)
        elif ticket.seq > self._streak_seq and ticket.level <= max(1, self._top_ok):
            self._in_row += 1  # (a refusal at a level never yet through is what a cap does: not counted)
        if ticket.level > int(self.limit):
            return
        if self._slow_start:  # to the most that got through at once, if under the level refused
            self.limit = max(1.0, min(self.limit, ticket.level - 1.0, float(self._top_ok or ticket.level - 1)))
            self._slow_start = False
        else:
            self.limit = max(1.0, self.limit - 1.0)
        self.cuts += 1
        self._cut_seq = self._admitted
        self._ok_levels.clear()

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
        """A 429/503 just arrived (seen in the HTTP hook, before the call's own error surfaces): admit nothing
        until that call is released, which reads the refusal (a full server, a closed window, a pace too fast)."""
        if not self.adaptive:
            return
        self._hold = True
        if not self._probe and self._hook_at is None:
            self._hook_at = self.clock()

    def observe_headers(self, headers: Mapping[str, str]) -> None:
        """A reply's x-ratelimit-* headers (any reply, retries included): the announced limits and their period
        set the pace; what is left is a floor under it."""
        if not self.adaptive:
            return
        found = read_ratelimit_headers(headers)
        if not found:
            return
        now = self.clock()
        if "requests" in found:
            self.header_requests.snapshot(found["requests"], now)
            self.pace_requests.observe(found["requests"], now)
        if "tokens" in found:
            self.header_tokens.snapshot(found["tokens"], now)
            self.pace_tokens.observe(found["tokens"], now)
        if self.why in ("start", "window", "refusals", "latency") and self.refusals_by_kind["headers"] == 0:
            self.why = "headers"
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
        # What it settled on, and why (describe_settled puts it in words).
        s["why"] = self.why if self.adaptive else "fixed"
        s["refused"] = dict(self.refusals_by_kind)
        for key, p in (("requests", self.pace_requests), ("tokens", self.pace_tokens)):
            if p.known:
                s[f"pace_{key}_per_min"] = p.per_s * 60.0
                s[f"pace_{key}_period_s"] = p.period_s
                s[f"pace_{key}_share"] = p.share
        s["ceiling"] = self.ceiling
        s["recent_calls"] = len(self._recent)
        s["recent_refused"] = self._recent_refused
        s["rtt_s"] = self.rtt_s
        s["base_rtt_s"] = self.base_rtt_s
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
    settled = describe_settled(state)
    return " · ".join(parts + limits + ([settled] if settled else []))


def describe_settled(state: dict[str, Any] | None) -> str:
    """What the limiter settled on and why, in a few words, from `RateLimiter.state()` (also an older run's stored
    state, which lacks these keys: then ""). E.g. "paced at 582/min of 600/min announced per 60 s (headers;
    slowed by 2 429s: enforced over shorter windows)", "settled at 17 in flight (refusals: 2 of the last 200
    calls, held near 1%)",
    "settled at 18 in flight (latency: 31% over the lowest round trip)"."""
    if not state or "why" not in state:
        return ""
    why = state["why"]
    if state.get("pace_requests_per_min") or state.get("pace_tokens_per_min"):
        key = "requests" if state.get("pace_requests_per_min") else "tokens"
        unit = "req" if key == "requests" else "tok"
        limit = state.get(f"header_{key}_limit") or 0
        period = state.get(f"pace_{key}_period_s") or 60.0
        text = (f"paced at {_short(state[f'pace_{key}_per_min'])} {unit}/min of {_short(limit * 60.0 / period)} "
                f"{unit}/min announced (headers")
        smoothed = (state.get("refused") or {}).get("headers", 0)
        if smoothed:
            text += f"; {smoothed} refused while paced: enforced over shorter windows, slowed to " \
                    f"{state.get(f'pace_{key}_share', 1.0):.0%}"
        return text + ")"
    if why == "fixed":
        return ""
    n = state.get("concurrency")
    if why == "refusals":
        if "recent_calls" not in state:  # a run stored before the limiter counted its recent calls
            return f"settled at {n} in flight (refusals at {state.get('ceiling') or n + 1})"
        return (f"settled at {n} in flight (refusals: {state['recent_refused']} of the last {state['recent_calls']} "
                f"calls, held near {REFUSED_TARGET:.0%})")
    if why == "latency" and state.get("rtt_s") and state.get("base_rtt_s"):
        slower = state["rtt_s"] / state["base_rtt_s"] - 1.0
        return f"settled at {n} in flight (latency: {slower:.0%} over the lowest round trip)"
    if why == "window":
        return f"pausing at a closed window, {n} in flight (refusals at any level)"
    if why == "start":
        return f"growing, {n} in flight (no refusal yet)"
    return ""


def _short(n: float) -> str:
    return f"{n / 1000:.1f}k" if n >= 10_000 else f"{n:.0f}"
