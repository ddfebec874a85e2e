"""Ray, for stages and embeddings past one machine: joining or starting the cluster, and the HTTP session Ray
Data's LLM processor sends a stage's requests with (docs/ray.md).

Ray is an extra (requirements-ray.txt: ray[data] and aiohttp, which `ray.data.llm`'s HTTP stage needs); nothing
here imports it at module level, so the CLI starts without it and `--batch ray` says how to install it.

`EvolabSession` runs inside Ray's workers. Ray's `HttpRequestUDF` posts each row's `payload` with the
processor's headers (the key travels there and nowhere else) to one URL; evolab's rows carry a JSON string of
{url, purpose, body}, and the session posts `body` to the row's endpoint (requests spread across replicas)
with the purpose header the online backend sends, counts the 429/503 answers it got, and hands Ray back a flat
{status, text, refused, worker} record (a nested reply would give every row a different Arrow schema).
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

RAY_MISSING = ("Ray is not installed: --batch ray and embed --ray need the Ray extra. Install it with "
               "`pip install -r requirements-ray.txt` (ray[data] and aiohttp; about 0.7 GB), or `make install-dev`.")
# Ray's HTTP stage retries these (HttpRequestUDF.RETRYABLE_STATUS_CODES); a request refused by each attempt is
# handed back as a failed line instead of failing the whole Dataset.
RETRYABLE = (429, 408, 502, 503, 504)
GAVE_UP = 599  # the status of a line whose attempts were all refused or lost (never an endpoint's own)


class RayMissing(RuntimeError):
    """The Ray extra is not installed; the message says how to install it."""


def require_ray() -> None:
    """Raise RayMissing (with the install command) unless ray.data.llm and its HTTP stage import."""
    try:
        # heavy: ray (about 1 s), only for --batch ray / embed --ray; its HTTP stage imports aiohttp, the extra's other half
        from ray.data.llm import HttpRequestProcessorConfig  # noqa: F401
    except ImportError as e:
        raise RayMissing(f"{RAY_MISSING} ({e})") from None


def connect(address: str | None = None, *, num_cpus: int | None = None, temp_dir: str | None = None) -> str:
    """Join the cluster at `address` (or $RAY_ADDRESS), or start a local Ray with this machine's cores
    (`num_cpus` fewer; its session files under `temp_dir`, default /tmp/ray), unless this process is connected
    already. Workers get this evolab (runtime_env py_modules), so a cluster needs no install of it. Ray Data's
    progress lines stay out of the terminal: evolab logs each block's rows done of total. Returns the cluster's
    address."""
    require_ray()
    import ray  # heavy: ray, only for --batch ray / embed --ray
    import ray.data  # heavy: ray

    logging.getLogger("ray.data").setLevel(logging.WARNING)
    ray.data.DataContext.get_current().enable_progress_bars = False

    if not ray.is_initialized():
        address = address or os.environ.get("RAY_ADDRESS") or None
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                  "runtime_env": {"py_modules": [str(Path(__file__).resolve().parents[1])],
                                                  "excludes": ["__pycache__", "*.pyc"]}}
        if address is None:
            kwargs["num_cpus"] = num_cpus or os.cpu_count() or 1
            if temp_dir:
                kwargs["_temp_dir"] = temp_dir
        # ray.init replaces the SIGTERM handler (with one that exits at once); the process's own is kept, so
        # `kill PID` stops a run the way Ctrl-C does (evolab/__main__.py), with or without Ray.
        on_term = signal.getsignal(signal.SIGTERM) if threading.current_thread() is threading.main_thread() else None
        try:
            ray.init(address=address, **kwargs)
        except ConnectionError as e:
            raise RayMissing(f"Cannot join the Ray cluster at {address}: {e}. Start it with `ray start --head` "
                             "(see docs/ray.md) or leave --ray-address out for a local Ray.") from None
        finally:
            if on_term is not None:
                signal.signal(signal.SIGTERM, on_term)
    return ray.get_runtime_context().gcs_address


def row_payload(url: str, purpose: str, body: dict[str, Any]) -> str:
    """A request as a Dataset row's payload: a JSON string (every row the same Arrow type), no key in it."""
    return json.dumps({"url": url, "purpose": purpose, "body": body}, ensure_ascii=False)


class _Pace:
    """At most `per_s` requests a second started by this worker process (all its batches together: Ray's own
    `qps` paces each batch from its start, and an actor runs several batches at once)."""

    def __init__(self, per_s: float | None):
        self.interval = 1.0 / per_s if per_s else 0.0
        self.next_at = 0.0
        self.lock = asyncio.Lock()

    async def wait(self) -> None:
        if not self.interval:
            return
        async with self.lock:
            now = time.monotonic()
            start = max(now, self.next_at)
            self.next_at = start + self.interval
        if start > now:
            await asyncio.sleep(start - now)


_PACES: dict[tuple[int, float | None], _Pace] = {}  # one per event loop and rate, in each worker process


class _Reply:
    """What `HttpRequestUDF` reads from `await session.post(...)`: `async with`, `status`, `reason`, `json()`."""

    def __init__(self, status: int, text: str, refused: int, reason: str = ""):
        self.status, self.reason = status, reason
        self._record = {"status": status, "text": text, "refused": refused, "worker": os.getpid()}

    async def __aenter__(self) -> "_Reply":
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def json(self) -> dict[str, Any]:
        return self._record


class EvolabSession:
    """The `session_factory` of evolab's HttpRequestProcessorConfig (module doc). Each post starts at once (Ray's
    own aiohttp session starts a request only when it is awaited, so a batch's requests would go one by one),
    paced to `per_worker_rps`; a row refused or lost on each of Ray's `max_retries` + 1 attempts comes back as
    a failed line (status 599) rather than failing the Dataset."""

    def __init__(self, per_worker_rps: float | None = None, max_retries: int = 0, timeout_s: float = 600.0):
        self.per_worker_rps, self.max_retries, self.timeout_s = per_worker_rps, max_retries, timeout_s
        self._session = None
        self._attempts: dict[str, int] = {}
        self._refused: dict[str, int] = {}

    async def __aenter__(self) -> "EvolabSession":
        from ray.llm._internal.batch.stages import http_request_stage  # heavy: ray; its aiohttp is the one Ray uses

        self._aiohttp = http_request_stage.aiohttp
        self._session = self._aiohttp.ClientSession(timeout=self._aiohttp.ClientTimeout(total=self.timeout_s))
        key = (id(asyncio.get_running_loop()), self.per_worker_rps)
        self._pace = _PACES.setdefault(key, _Pace(self.per_worker_rps))
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._session.close()

    def post(self, url: str, headers: dict[str, str] | None = None, data: Any = None) -> "asyncio.Task[_Reply]":
        return asyncio.ensure_future(self._post(headers or {}, data))

    async def _post(self, headers: dict[str, str], data: Any) -> _Reply:
        payload = json.loads(data)
        if isinstance(payload, str):  # the row's payload is a JSON string, which Ray encoded once more
            payload = json.loads(payload)
        marker = data  # the same request on each retry (Ray encodes the same payload again)
        attempt = self._attempts[marker] = self._attempts.get(marker, 0) + 1
        last = attempt > self.max_retries
        headers = {**headers, **({"X-Evolab-Purpose": payload["purpose"]} if payload.get("purpose") else {})}
        await self._pace.wait()
        try:
            async with self._session.post(payload["url"], headers=headers,
                                          data=json.dumps(payload["body"], ensure_ascii=False)) as resp:
                text = await resp.text()
                status = resp.status
        except (asyncio.TimeoutError, self._aiohttp.ClientError) as e:
            if not last:
                raise  # Ray waits (base_retry_wait_time_in_s, doubling) and asks again
            return _Reply(GAVE_UP, f"{type(e).__name__} on each of {attempt} attempts", self._refused.get(marker, 0))
        if status in RETRYABLE:
            self._refused[marker] = self._refused.get(marker, 0) + 1
            if last:
                return _Reply(GAVE_UP, f"HTTP {status} on each of {attempt} attempts: {text[:300]}",
                              self._refused[marker])
            return _Reply(status, "", self._refused[marker], reason=f"HTTP {status}")
        return _Reply(status, text, self._refused.get(marker, 0))
