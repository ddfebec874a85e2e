"""A run's lease: one engine per run, in any process (issue 22).

Every engine entry point (`pipeline.arun`, `batch.run_batched`, batch export and import) runs holding the run's
lease, a row of the store's `run_leases` table: the holder (host, pid and a random token), since when, and its
last heartbeat. It is taken in one BEGIN IMMEDIATE transaction (of two takers in any processes, exactly one
wins), renewed by a heartbeat thread every `expiry / 4` seconds (at most 5) while the engine runs, and released
when the engine ends, however it ends (finished, stopped, failed, Ctrl-C). A second engine is refused with
`LeaseHeld`, whose message names the holder and how to take over. A holder that stopped beating for longer than
its expiry (30 s; `EVOLAB_LEASE_EXPIRY_S`) was killed or lost: its lease is taken over, again atomically.

A front end that must hold the lease before it writes anything (the CLI's `resume` changes the budget first, and
`resume --wait` waits for the lease) takes it with `hold(...)`; the engine it then calls in the same thread
runs under that lease instead of asking for its own.

If a holder's heartbeat finds the lease taken (the process was frozen for longer than the expiry, and another
took over), it sets the engine's stop event: the engine stops after the steps in flight, and the entry point
raises `LeaseLost`.
"""
from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import os
import re
import socket
import sqlite3
import threading
import time
import uuid
from contextlib import contextmanager
from typing import Any, Callable, Iterator

from evolab.store import Store

DEFAULT_EXPIRY_S = 30.0
EXPIRY_ENV = "EVOLAB_LEASE_EXPIRY_S"
MAX_BEAT_S = 5.0


class LeaseError(Exception):
    """A run's lease could not be taken (the CLI's exit status 2: nothing was run or written)."""


class LeaseHeld(LeaseError):
    """Another engine runs this run."""

    def __init__(self, run_id: str, holder: dict[str, Any]):
        self.run_id, self.holder = run_id, holder
        super().__init__(
            f"Run {run_id} is being run by another engine: {describe_holder(holder)}. Wait for it to end, or let "
            f"`resume --wait` take the run over when it ends or its lease expires ({holder['expiry_s']:g} s without "
            "a heartbeat); once you have checked that process is gone (killed, or its machine is down), "
            "`resume --take-over` takes the run over at once.")


class LeaseLost(RuntimeError):
    """This engine's lease was taken over while it ran (it missed its heartbeats): it stopped."""


def expiry_seconds() -> float:
    """The lease expiry this process declares: EVOLAB_LEASE_EXPIRY_S (seconds > 0) or 30."""
    raw = os.environ.get(EXPIRY_ENV, "").strip()
    if not raw:
        return DEFAULT_EXPIRY_S
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise LeaseError(f"{EXPIRY_ENV} must be a number of seconds above 0, not {raw!r}.")
    return value


def _clock(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def describe_holder(holder: dict[str, Any], now: float | None = None) -> str:
    """'host H, pid P, since 2026-05-09 12:00:03 (last heartbeat 1.2 s ago)', and a hint when that pid is not
    running on this very host."""
    now = time.time() if now is None else now
    # A host name is letters, digits, dots and dashes; a store made elsewhere may hold anything (Markdown,
    # terminal escapes): shown as such characters only.
    host = re.sub(r"[^A-Za-z0-9.\-]", "?", str(holder["host"]))[:100]
    text = (f"host {host}, pid {int(holder['pid'])}, since {_clock(holder['since'])} (last heartbeat "
            f"{max(0.0, now - holder['heartbeat']):.1f} s ago)")
    if holder["host"] == socket.gethostname() and not _pid_alive(int(holder["pid"])):
        text += f"; no process {holder['pid']} runs on this host now"
    return text


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):  # someone else's process, or a platform that cannot tell
        return True
    return True


def is_live(holder: dict[str, Any] | None, now: float | None = None) -> bool:
    now = time.time() if now is None else now
    return holder is not None and now - holder["heartbeat"] <= holder["expiry_s"]


def live_holder(store: Store, run_id: str) -> dict[str, Any] | None:
    """The run's lease row while its holder beats; None when the run is free (never leased, released, expired)."""
    holder = store.lease(run_id)
    return holder if is_live(holder) else None


class RunLease:
    """One engine's claim on one run. `acquire()` takes it (or raises LeaseHeld); `release()` gives it back."""

    def __init__(self, store: Store, run_id: str, *, expiry_s: float | None = None, take_over: bool = False):
        self.store, self.run_id, self.take_over = store, run_id, take_over
        self.expiry_s = expiry_seconds() if expiry_s is None else float(expiry_s)
        self.beat_s = min(MAX_BEAT_S, self.expiry_s / 4)
        self.host, self.pid, self.token = socket.gethostname(), os.getpid(), uuid.uuid4().hex
        self.previous: dict[str, Any] | None = None  # the holder this lease took over from (expired or forced)
        self.taken_at: float | None = None
        self.lost = threading.Event()
        self.engines = 0  # engines running under this lease now (at most one)
        self._stop_events: list[threading.Event] = []
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    def try_take(self) -> dict[str, Any] | None:
        """Take the lease if it is free, expired or `take_over`: None when taken, else the live holder."""
        taken, before = self.store.take_lease(self.run_id, host=self.host, pid=self.pid, token=self.token,
                                              expiry_s=self.expiry_s, take_over=self.take_over)
        if not taken:
            return before
        self.taken_at = time.time()
        self.previous = before if before is not None and before["token"] != self.token else None
        self._thread = threading.Thread(target=self._beat, name=f"evolab-lease-{self.run_id}", daemon=True)
        self._thread.start()
        return None

    def acquire(self, *, wait: bool = False, on_wait: Callable[[dict[str, Any]], None] | None = None,
                poll_s: float | None = None) -> "RunLease":
        """Take the lease; with `wait`, poll until it is released or expires (then take it), calling
        `on_wait(holder)` each time the holder changes. Raises LeaseHeld without `wait`."""
        told: str | None = None
        while True:
            holder = self.try_take()
            if holder is None:
                return self
            if not wait:
                raise LeaseHeld(self.run_id, holder)
            if on_wait is not None and holder["token"] != told:
                told = holder["token"]
                on_wait(holder)
            # Polling the store: the holder may be another process, whose release nothing here can observe.
            time.sleep(poll_s if poll_s is not None else min(1.0, holder["expiry_s"] / 4, self.beat_s))

    def watch(self, stop_event: threading.Event) -> None:
        """Set `stop_event` if this lease is lost (the engine then stops after the steps in flight)."""
        self._stop_events.append(stop_event)
        if self.lost.is_set():
            stop_event.set()

    def _beat(self) -> None:
        while not self._done.wait(self.beat_s):
            try:
                ours = self.store.renew_lease(self.run_id, self.token)
            except sqlite3.Error:  # a locked or busy file: the next beat tries again (the expiry spans four beats)
                continue
            if not ours:
                self.lost.set()
                for event in self._stop_events:
                    event.set()
                return

    def release(self) -> None:
        self._done.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if not self.lost.is_set():
            try:
                self.store.release_lease(self.run_id, self.token)
            except sqlite3.Error:  # the file is locked or gone: the lease expires by itself after expiry_s
                pass

    def __enter__(self) -> "RunLease":
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


# The leases this thread's front end holds (hold()): an engine started in the same context runs under them.
_HELD: contextvars.ContextVar[tuple[RunLease, ...]] = contextvars.ContextVar("evolab_run_leases", default=())


def _same_store(a: Store, b: Store) -> bool:
    if a is b:
        return True
    return a.path != ":memory:" and os.path.realpath(a.path) == os.path.realpath(b.path)


@contextmanager
def hold(store: Store, run_id: str, *, wait: bool = False, take_over: bool = False,
         on_wait: Callable[[dict[str, Any]], None] | None = None, expiry_s: float | None = None) -> Iterator[RunLease]:
    """Hold the run's lease for a block (a front end, before its first write); an engine entry point called
    inside the block, in this thread, runs under it."""
    lease = RunLease(store, run_id, expiry_s=expiry_s, take_over=take_over).acquire(wait=wait, on_wait=on_wait)
    token = _HELD.set(_HELD.get() + (lease,))
    try:
        yield lease
    finally:
        _HELD.reset(token)
        lease.release()


@contextmanager
def _engine_lease(store: Store, run_id: str, stop_event: threading.Event | None) -> Iterator[RunLease]:
    held = next((lease for lease in _HELD.get() if lease.run_id == run_id and _same_store(lease.store, store)),
                None)
    if held is not None and held.engines:  # one lease, one engine: not two engines under one front end's lease
        raise LeaseHeld(run_id, store.lease(run_id) or {"host": held.host, "pid": held.pid, "since": held.taken_at,
                                                        "heartbeat": time.time(), "expiry_s": held.expiry_s})
    own = RunLease(store, run_id).acquire() if held is None else None
    lease = held or own
    assert lease is not None
    lease.engines += 1
    if stop_event is not None:
        lease.watch(stop_event)
    try:
        yield lease
    finally:
        lease.engines -= 1
        if own is not None:
            own.release()
    if lease.lost.is_set():
        holder = store.lease(run_id)
        raise LeaseLost(f"Run {run_id}: this engine missed its heartbeats for longer than its lease's expiry "
                        f"({lease.expiry_s:g} s) and another took the run over"
                        + (f" ({describe_holder(holder)})" if holder else "") + "; it stopped after the steps "
                        "in flight. Check which process runs it now before you resume it.")


def leased(fn: Callable) -> Callable:
    """An engine entry point `fn(store, run_id, ...)` that runs holding the run's lease: the one its front end
    holds (`hold`), or its own, refused with LeaseHeld while another engine holds it. Taken before anything is
    called or written; released when it ends, however it ends. A `stop_event` keyword is created if none is
    given, so that a lost lease stops the engine."""
    takes_stop = "stop_event" in inspect.signature(fn).parameters

    def stop_of(kwargs: dict[str, Any]) -> threading.Event | None:
        if not takes_stop:
            return None
        if kwargs.get("stop_event") is None:
            kwargs["stop_event"] = threading.Event()
        return kwargs["stop_event"]

    if asyncio.iscoroutinefunction(fn):
        @functools.wraps(fn)
        async def run_async(store: Store, run_id: str, *args: Any, **kwargs: Any) -> Any:
            with _engine_lease(store, run_id, stop_of(kwargs)):
                return await fn(store, run_id, *args, **kwargs)
        return run_async

    @functools.wraps(fn)
    def run(store: Store, run_id: str, *args: Any, **kwargs: Any) -> Any:
        with _engine_lease(store, run_id, stop_of(kwargs)):
            return fn(store, run_id, *args, **kwargs)
    return run
