"""An OpenAI-compatible stub HTTP server for tests and benchmarks (standard library only).

    with StubServer() as stub:
        backend = OpenAICompatibleBackend(model="gpt-4o-mini", base_url=stub.base_url)
        ...
        stub.count("evolve")      # chat requests that arrived with X-Evolab-Purpose: evolve

It listens on 127.0.0.1 on a free port and answers
  POST /v1/chat/completions   a chat.completion body; the text comes from `handler(messages, purpose)`
                              (default `evolab.llm.fake.scripted_reply`, or its JSON twin when the request
                              has a `response_format` the stub honours: see `structured`), usage counted with a
                              word/punct regex
  GET  /v1/models             the stub's model list
  POST /v1/embeddings         deterministic unit vectors from a hash of each text (dim 16), float or base64

Faults, for testing retries and error paths:
  stub.inject(429, 500, "timeout")   queued, consumed one per chat request before normal replies
  stub.fail_always = 503             every chat request fails (a storm) until set back to None
  stub.error_rate = 0.3              a seeded-random share of chat requests fail with stub.error_status
A fault is an HTTP status code (error responses carry `retry-after-ms`, so the openai client's retries are
quick), "timeout" (sleeps `timeout_sleep` seconds before answering), "malformed" (HTTP 200, not JSON),
"no_choices" (valid JSON without `choices`) or "disconnect" (closes the connection without a reply).

Reasoning models, as OpenAI serves them: `StubServer(reasoning_models=("o3",))` answers requests for those
models (and their dated snapshots) that carry `max_tokens`, or a `temperature`/`top_p` other than 1, with
HTTP 400 and OpenAI's exact error body; otherwise it spends `reasoning_tokens` hidden tokens of the
`max_completion_tokens` cap and reports them in `usage.completion_tokens_details.reasoning_tokens` (they are
part of `completion_tokens`, as OpenAI counts them).

Rate limits, like a provider's: `StubServer(rpm=600, window_s=3)` allows 600 requests a minute scaled to
fixed windows of 3 s (30 per window), `tpm=...` likewise for tokens (a request is charged its prompt plus
its max_tokens on arrival, as OpenAI counts). Over the limit a chat request gets an immediate 429 with
`retry-after-ms`/`retry-after` until the window ends (`ratelimit_retry_after=False`: no hint, like most
self-hosted servers). `ratelimit_headers=True` adds OpenAI's `x-ratelimit-limit/remaining/reset-requests`
(and `-tokens`) to every chat reply; they describe the window (limit = allowed per window).
`quantum_s=1` also enforces the limit over short fixed windows (600 a minute as 10 a second), while the headers
still describe the whole window: a per-minute limit "quantized" as OpenAI documents; its 429s' Retry-After runs
to the quantum's end.

A self-hosted server's concurrency cap: `StubServer(max_concurrent=16)` serves 16 chat requests at once and
answers `busy_status` (503) at once past that, with no rate-limit headers (`busy_retry_after=1`: with
Retry-After); `queue=16` lets 16 more wait for a slot first (a server that slows down before it refuses).
Each chat request served records `served`: (time.time() it got a slot or began, when its reply was written).

The files and batches API, as OpenAI serves it (evolab/engine/batch.py; the openai client's files/batches calls work):
  POST /v1/files                 multipart upload (purpose must be "batch"); GET /v1/files/{id}/content
  POST /v1/batches               {input_file_id, endpoint "/v1/chat/completions", completion_window "24h"}
  GET  /v1/batches[/{id}]        the list (newest first) or one job; POST /v1/batches/{id}/cancel
A job goes validating -> in_progress -> finalizing -> completed in a background thread (`stub.batch_timing`:
seconds of validating and finalizing, and per line), answering each line with `chat_completion` (the same
handler and usage as the chat route; the purpose is the custom_id's part before ":", as evolab writes them).
Output lines are {id, custom_id, response: {status_code, request_id, body}, error}; failed lines go to the
error file. Outcomes, one per created job from `stub.batch_outcomes` (default completed): "failed" (fails
validation, with `errors`), "expired" (answers the first `stub.batch_expire_after` lines, the rest go to the
error file as batch_expired). A cancel makes it cancelling, then cancelled with the lines answered so far.
`stub.batch_line_fault(line) -> status | None` fails chosen lines with that HTTP status (partial errors);
`stub.batches_created()` counts the jobs created. Limits, as OpenAI's: `stub.batch_max_requests` lines per job
(50,000; more fails validation) and `stub.batch_enqueued_limit` tokens (prompt characters / 4) across the jobs
in progress (None: no limit; a job that would pass it fails with OpenAI's `token_limit_exceeded` error).
`stub.file_content_failures = N` fails the next N file downloads with 502.

Every request is recorded in `stub.requests` (dicts: method, path, purpose, body, headers with lower-case
names, time, and once answered the HTTP `status` and the `usage` reported); `stub.max_in_flight` is the
most chat requests seen at once.
"""
from __future__ import annotations

import base64
import hashlib
import json
import math
import random
import re
import socket
import struct
import sys
import threading
import time
import uuid
from collections import deque
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

from evolab.llm.fake import scripted_reply, scripted_structured_reply

Handler = Callable[[list[dict[str, Any]], str], str]
Fault = int | str

FAULT_NAMES = ("timeout", "malformed", "no_choices", "disconnect")
_TOKEN = re.compile(r"\w+|[^\w\s]")


def count_tokens(text: str) -> int:
    """The stub's token count: words and punctuation marks."""
    return len(_TOKEN.findall(text))


def _content_text(content: Any) -> str:
    """A message's text, whether `content` is a string or a list of content parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return str(content)


def _truncate(text: str, max_tokens: int) -> tuple[str, bool]:
    """Cut `text` after `max_tokens` stub tokens; (text, truncated)."""
    if max_tokens <= 0:
        return "", bool(text)
    for i, m in enumerate(_TOKEN.finditer(text)):
        if i + 1 == max_tokens:
            rest = text[m.end():]
            return (text[:m.end()], True) if _TOKEN.search(rest) else (text, False)
    return text, False


def _default_handler() -> Handler:
    return scripted_reply


def embedding_vector(text: str, dim: int = 16) -> list[float]:
    """A deterministic pseudo-random unit vector for `text`."""
    rng = random.Random(int(hashlib.sha256(text.encode("utf-8")).hexdigest(), 16))
    v = [rng.gauss(0.0, 1.0) for _ in range(dim)]
    norm = math.sqrt(sum(x * x for x in v)) or 1.0
    return [x / norm for x in v]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256
    allow_reuse_address = True
    stub: "StubServer"

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (timeout) or a stub that is stopping: not worth a traceback.
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError, OSError)) or self.stub._stopping.is_set():
            return
        super().handle_error(request, client_address)


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like a real endpoint behind the openai client's pool
    # Headers and body go out in two send()s; with Nagle's algorithm on, the body waits ~40 ms for the client's
    # delayed ACK, a stall no real endpoint adds (bench/throughput.py --stub-nagle brings it back to compare).
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass  # no per-request log lines

    # -- plumbing -------------------------------------------------------------------------------
    def _read_json(self) -> tuple[Any, bytes]:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            return (json.loads(raw.decode("utf-8")) if raw else None), raw
        except (ValueError, UnicodeDecodeError):
            return None, raw

    def _send(self, status: int, body: bytes, content_type: str = "application/json",
              headers: dict[str, str] | None = None) -> None:
        entry = getattr(self, "_entry", None)
        if entry is not None:
            entry["status"] = status
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, socket.timeout):
            self.close_connection = True

    def _send_json(self, status: int, data: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(data, ensure_ascii=False).encode("utf-8"), headers=headers)

    def _error(self, status: int, message: str, kind: str = "invalid_request_error",
               headers: dict[str, str] | None = None) -> None:
        self._send_json(status, {"error": {"message": message, "type": kind, "param": None,
                                           "code": str(status)}}, headers=headers)

    def _route(self) -> str:
        path = self.path.split("?", 1)[0].rstrip("/")
        return path[3:] if path.startswith("/v1") else path

    # -- methods --------------------------------------------------------------------------------
    def do_GET(self) -> None:  # noqa: N802
        stub = self.server.stub
        self._entry = stub._record(self, None)
        if self._route().startswith(("/files", "/batches")):
            self._batch_api("GET", b"")
            return
        if self._route() == "/models":
            self._send_json(200, {"object": "list", "data": [
                {"id": m, "object": "model", "created": 0, "owned_by": "evolab-stub"} for m in stub.model_ids()]})
        else:
            self._error(404, f"Unknown path {self.path}", "not_found_error")

    def do_POST(self) -> None:  # noqa: N802
        stub = self.server.stub
        if self._route().startswith(("/files", "/batches")):
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            self._entry = stub._record(self, None)
            self._batch_api("POST", raw)
            return
        body, _raw = self._read_json()
        self._entry = stub._record(self, body)
        route = self._route()
        if route not in ("/chat/completions", "/embeddings"):
            self._error(404, f"Unknown path {self.path}", "not_found_error")
            return
        if stub.api_key is not None and self.headers.get("Authorization") != f"Bearer {stub.api_key}":
            self._error(401, "Incorrect API key provided.", "authentication_error")
            return
        if not isinstance(body, dict):
            self._error(400, "The request body is not a JSON object.")
            return
        refused_for = stub._rate_limited(body) if route == "/chat/completions" else None
        if refused_for is not None:
            self._error(429, "Rate limit reached: too many requests or tokens in this window.", "rate_limit_error",
                        headers=stub._ratelimit_headers(limited=True, retry_s=refused_for))
            return
        if route == "/embeddings":
            stub._sleep(stub._latency())
            self._embeddings(body)
            return
        if not stub._take_slot():  # a full server (max_concurrent and its queue): refused at once, no headers
            headers = {} if stub.busy_retry_after is None else {"retry-after": f"{stub.busy_retry_after:g}"}
            self._error(stub.busy_status, "The server is busy: too many requests at once.", "server_error",
                        headers=headers)
            return
        served_from = time.time()
        with stub._lock:
            stub._in_flight += 1
            stub.max_in_flight = max(stub.max_in_flight, stub._in_flight)
        try:
            self._chat(body)
        finally:
            with stub._lock:
                stub._in_flight -= 1
            stub._free_slot()
            # When this request held a slot (its reply written by the end): the server's side of its round trip.
            self._entry["served"] = (served_from, time.time())

    def _chat(self, body: dict[str, Any]) -> None:
        stub = self.server.stub
        fault = stub._next_fault()
        stub._sleep(stub._latency())
        model = str(body.get("model") or "stub")
        if fault is not None:
            if fault == "timeout":
                stub._sleep(stub.timeout_sleep)  # the client gives up first; answer late anyway
            elif fault == "disconnect":
                self.close_connection = True
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                return
            elif fault == "malformed":
                self._send(200, b'{"id": "chatcmpl-stub", "object": "chat.completion", "choices": [{"mess')
                return
            elif fault == "no_choices":
                self._send_json(200, {"id": "chatcmpl-" + uuid.uuid4().hex[:12], "object": "chat.completion",
                                      "created": int(time.time()), "model": model})
                return
            else:
                status = int(fault)
                headers = {}
                if stub.retry_after_ms is not None:
                    headers = {"retry-after-ms": str(stub.retry_after_ms), "retry-after": "0"}
                kind = {429: "rate_limit_error", 401: "authentication_error",
                        404: "not_found_error"}.get(status, "server_error")
                self._error(status, f"Injected fault: HTTP {status}.", kind, headers=headers)
                return
        purpose = self.headers.get("X-Evolab-Purpose") or ""
        status, data = stub.chat_completion(body, purpose)
        if status != 200:
            self._send_json(status, data)
            return
        self._entry["usage"] = data["usage"]
        self._send_json(200, headers=stub._ratelimit_headers(), data=data)

    # -- the files and batches API (see the module doc) -------------------------------------------------
    def _batch_api(self, method: str, raw: bytes) -> None:
        stub = self.server.stub
        if stub.api_key is not None and self.headers.get("Authorization") != f"Bearer {stub.api_key}":
            self._error(401, "Incorrect API key provided.", "authentication_error")
            return
        parts = self._route().strip("/").split("/")
        try:
            if method == "POST" and parts == ["files"]:
                purpose, filename, data = _multipart_file(self.headers.get("Content-Type") or "", raw)
                self._send_json(200, stub._add_file(data, purpose, filename))
            elif method == "GET" and len(parts) == 3 and parts[0] == "files" and parts[2] == "content":
                f = stub.files.get(parts[1])
                if f is None:
                    self._error(404, f"No such File object: {parts[1]}", "not_found_error")
                elif stub.file_content_failures > 0:  # the files API's own bad days (a 502 on a download)
                    stub.file_content_failures -= 1
                    self._error(502, "Bad gateway.", "server_error")
                else:
                    self._send(200, f["data"], content_type="application/octet-stream")
            elif method == "POST" and parts == ["batches"]:
                body = json.loads(raw.decode("utf-8") or "null")
                status, data = stub._create_batch(body if isinstance(body, dict) else {})
                self._send_json(status, data)
            elif method == "GET" and parts == ["batches"]:
                with stub._lock:
                    data = [stub._batch_object(b) for b in reversed(list(stub.batches.values()))]
                self._send_json(200, {"object": "list", "data": data, "has_more": False})
            elif method == "GET" and len(parts) == 2 and parts[0] == "batches":
                batch = stub.batches.get(parts[1])
                if batch is None:
                    self._error(404, f"No batch found with id '{parts[1]}'.", "not_found_error")
                else:
                    self._send_json(200, stub._batch_object(batch))
            elif method == "POST" and len(parts) == 3 and parts[0] == "batches" and parts[2] == "cancel":
                status, data = stub._cancel_batch(parts[1])
                self._send_json(status, data)
            else:
                self._error(404, f"Unknown path {self.path}", "not_found_error")
        except ValueError as e:
            self._error(400, str(e))

    def _embeddings(self, body: dict[str, Any]) -> None:
        stub = self.server.stub
        inputs = body.get("input")
        if isinstance(inputs, str):
            inputs = [inputs]
        if not isinstance(inputs, list) or not inputs:
            self._error(400, "`input` must be a string or a non-empty list of strings.")
            return
        dim = body.get("dimensions") or stub.embedding_dim
        as_base64 = body.get("encoding_format") == "base64"
        data, tokens = [], 0
        for i, item in enumerate(inputs):
            text = item if isinstance(item, str) else json.dumps(item)
            tokens += count_tokens(text)
            vec = embedding_vector(text, int(dim))
            emb: Any = base64.b64encode(struct.pack(f"<{len(vec)}f", *vec)).decode("ascii") if as_base64 else vec
            data.append({"object": "embedding", "index": i, "embedding": emb})
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        self._entry["usage"] = usage
        self._send_json(200, {"object": "list", "data": data, "model": str(body.get("model") or "stub-embed"),
                              "usage": usage})


class StubServer:
    """An OpenAI-compatible server in a background thread. Use as a context manager or start()/stop()."""

    def __init__(self, handler: Handler | None = None, latency: float | Callable[[], float] = 0.0, *,
                 seed: int = 0, timeout_sleep: float = 3.0, retry_after_ms: int | None = 10,
                 embedding_dim: int = 16, api_key: str | None = None, models: tuple[str, ...] = ("stub",),
                 structured: tuple[str, ...] = ("json_schema", "json_object"), structured_error: int = 400,
                 reasoning_models: tuple[str, ...] = (), reasoning_tokens: int = 8,
                 rpm: float | None = None, tpm: float | None = None, window_s: float = 60.0,
                 ratelimit_headers: bool = False, ratelimit_retry_after: bool = True, quantum_s: float | None = None,
                 max_concurrent: int | None = None, queue: int = 0, busy_status: int = 503,
                 busy_retry_after: float | None = None):
        if handler is None:
            handler = scripted_reply
        self.handler: Handler = handler
        self.latency = latency
        self.timeout_sleep = timeout_sleep
        self.retry_after_ms = retry_after_ms
        self.embedding_dim = embedding_dim
        # response_format types it honours (with the default handler it then answers in JSON); others get
        # `structured_error` (400 like OpenAI for a bad field, 500 like llama-cpp-python).
        self.structured = tuple(structured)
        self.structured_error = structured_error
        self.reasoning_models = tuple(reasoning_models)  # answered as OpenAI answers o3 (see the module doc)
        self.reasoning_tokens = reasoning_tokens
        # Rate limits (see the module doc): allowed per fixed window of `window_s`, scaled from per minute.
        self.rpm, self.tpm, self.window_s = rpm, tpm, float(window_s)
        self.ratelimit_headers, self.ratelimit_retry_after = ratelimit_headers, ratelimit_retry_after
        self._window = -1  # index of the current window; its counts:
        self._window_requests = 0
        self._window_tokens = 0
        # ... and also over short windows of `quantum_s` (a per-minute limit "quantized", as OpenAI may enforce it).
        self.quantum_s = quantum_s
        self._quantum, self._quantum_requests, self._quantum_tokens = -1, 0, 0
        self._t0 = time.monotonic()
        # A self-hosted server's concurrency cap: `max_concurrent` served at once, `queue` more wait for a slot
        # (their reply comes later), past that `busy_status` at once, with no headers (Retry-After if set).
        self.max_concurrent, self.queue, self.busy_status = max_concurrent, queue, busy_status
        self.busy_retry_after = busy_retry_after
        self._serving = 0
        self._waiting = 0
        self._slots = threading.Condition()
        self.api_key = api_key  # when set, requests without `Authorization: Bearer <api_key>` get 401
        self.models = list(models)
        self.fail_always: Fault | None = None
        self.error_rate = 0.0
        self.error_status: Fault = 429
        self.requests: list[dict[str, Any]] = []
        self.max_in_flight = 0
        self._in_flight = 0
        self._faults: deque[Fault] = deque()
        # The files and batches API (see the module doc).
        self.files: dict[str, dict[str, Any]] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self.batch_outcomes: deque[str] = deque()  # one per created job: completed, failed, expired
        self.batch_timing: dict[str, float] = {"validating": 0.02, "per_line": 0.0, "finalizing": 0.02}
        self.batch_expire_after = 0  # lines an "expired" job answers before its window ends
        self.batch_line_fault: Callable[[dict[str, Any]], int | None] | None = None
        self.batch_lines_answered = 0
        self.batch_max_requests = 50_000
        self.file_content_failures = 0  # the next N file downloads fail with 502
        self.batch_enqueued_limit: int | None = None
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> "StubServer":
        if self._server is not None:
            return self
        self._stopping.clear()
        self._server = _Server(("127.0.0.1", 0), _RequestHandler)
        self._server.stub = self
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"evolab-stub-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the listening socket; sleeping handlers wake up and finish."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> "StubServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("The stub server is not running: call start() or use it in a with block.")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    # -- faults ---------------------------------------------------------------------------------
    def inject(self, *faults: Fault) -> None:
        """Queue faults; each chat request consumes one before normal replies resume."""
        for f in faults:
            _check_fault(f)
        with self._lock:
            self._faults.extend(faults)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()
        self.fail_always = None
        self.error_rate = 0.0

    def _next_fault(self) -> Fault | None:
        with self._lock:
            if self._faults:
                return self._faults.popleft()
            if self.fail_always is not None:
                return _check_fault(self.fail_always)
            if self.error_rate > 0 and self._rng.random() < self.error_rate:
                return _check_fault(self.error_status)
        return None

    # -- the files and batches API ---------------------------------------------------------------------------
    def _add_file(self, data: bytes, purpose: str, filename: str) -> dict[str, Any]:
        file_id = "file-" + uuid.uuid4().hex[:24]
        f = {"id": file_id, "object": "file", "bytes": len(data), "created_at": int(time.time()),
             "filename": filename, "purpose": purpose, "status": "processed"}
        with self._lock:
            self.files[file_id] = {**f, "data": data}
        return f

    def _create_batch(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        input_id = body.get("input_file_id")
        if input_id not in self.files:
            return 400, {"error": {"message": f"No such File object: {input_id}", "type": "invalid_request_error",
                                   "param": "input_file_id", "code": None}}
        if body.get("endpoint") != "/v1/chat/completions" or body.get("completion_window") != "24h":
            return 400, {"error": {"message": "endpoint must be /v1/chat/completions and completion_window 24h",
                                   "type": "invalid_request_error", "param": None, "code": None}}
        with self._lock:
            outcome = self.batch_outcomes.popleft() if self.batch_outcomes else "completed"
            batch = {"id": "batch_" + uuid.uuid4().hex[:24], "input_file_id": input_id, "status": "validating",
                     "created_at": int(time.time()), "outcome": outcome, "output_file_id": None,
                     "error_file_id": None, "errors": None, "counts": {"total": 0, "completed": 0, "failed": 0},
                     "cancel": threading.Event(), "endpoint": body["endpoint"],
                     "metadata": body.get("metadata")}
            self.batches[batch["id"]] = batch
        threading.Thread(target=self._process_batch, args=(batch,), daemon=True).start()
        return 200, self._batch_object(batch)

    def _cancel_batch(self, batch_id: str) -> tuple[int, dict[str, Any]]:
        batch = self.batches.get(batch_id)
        if batch is None:
            return 404, {"error": {"message": f"No batch found with id '{batch_id}'.", "type": "not_found_error",
                                   "param": None, "code": None}}
        with self._lock:
            if batch["status"] in ("validating", "in_progress", "finalizing"):
                batch["status"] = "cancelling"
                batch["cancel"].set()
        return 200, self._batch_object(batch)

    def _batch_object(self, batch: dict[str, Any]) -> dict[str, Any]:
        return {"id": batch["id"], "object": "batch", "endpoint": batch["endpoint"], "errors": batch["errors"],
                "input_file_id": batch["input_file_id"], "completion_window": "24h", "status": batch["status"],
                "output_file_id": batch["output_file_id"], "error_file_id": batch["error_file_id"],
                "created_at": batch["created_at"], "request_counts": dict(batch["counts"]),
                "metadata": batch["metadata"]}

    def _process_batch(self, batch: dict[str, Any]) -> None:
        """validating -> in_progress (every line answered by the chat handler) -> finalizing -> completed; or
        failed (validation), expired (the first `batch_expire_after` lines answered, the rest in the error file
        as batch_expired), cancelled (the lines answered before the cancel)."""
        timing = self.batch_timing
        self._sleep(timing.get("validating", 0.0))
        lines = []
        for n, text in enumerate(self.files[batch["input_file_id"]]["data"].decode("utf-8").splitlines(), 1):
            if not text.strip():
                continue
            try:
                line = json.loads(text)
                if not isinstance(line, dict) or not {"custom_id", "method", "url", "body"} <= set(line):
                    raise ValueError
            except ValueError:
                with self._lock:
                    batch["status"], batch["outcome"] = "failed", "failed"
                    batch["errors"] = {"object": "list", "data": [{"code": "invalid_json_line", "line": n,
                                                                   "message": f"Line {n} is not a batch request."}]}
                return
            lines.append(line)
        tokens = sum(len(str(m.get("content") or "")) for line in lines if isinstance(line["body"], dict)
                     for m in line["body"].get("messages") or [] if isinstance(m, dict)) // 4
        with self._lock:
            batch["counts"]["total"] = len(lines)
            if batch["outcome"] == "failed":
                batch["status"] = "failed"
                batch["errors"] = {"object": "list", "data": [{"code": "injected_failure", "line": None,
                                                               "message": "The batch failed validation (injected)."}]}
                return
            if len(lines) > self.batch_max_requests:
                batch["status"] = "failed"
                batch["errors"] = {"object": "list", "data": [{
                    "code": "too_many_requests", "line": None,  # the stub's own code for it
                    "message": f"The input file has {len(lines):,} requests; a batch takes at most "
                               f"{self.batch_max_requests:,}."}]}
                return
            enqueued = sum(b.get("tokens", 0) for b in self.batches.values()
                           if b is not batch and b["status"] in ("validating", "in_progress", "finalizing"))
            if self.batch_enqueued_limit is not None and enqueued + tokens > self.batch_enqueued_limit:
                model = lines[0]["body"].get("model") if lines and isinstance(lines[0]["body"], dict) else None
                batch["status"] = "failed"
                batch["errors"] = {"object": "list", "data": [{
                    "code": "token_limit_exceeded", "line": None,
                    "message": f"Enqueued token limit reached for {model} in organization org-stub. Limit: "
                               f"{self.batch_enqueued_limit:,} enqueued tokens. Please try again once some "
                               "in_progress batches have been completed."}]}
                return
            batch["tokens"] = tokens
            if batch["cancel"].is_set():
                batch["status"] = "cancelled"
                return
            batch["status"] = "in_progress"
        outputs, errors = [], []
        expire_after = self.batch_expire_after if batch["outcome"] == "expired" else None
        for i, line in enumerate(lines):
            if batch["cancel"].is_set() or self._stopping.is_set():
                break
            if expire_after is not None and i >= expire_after:
                errors.append({"id": "batch_req_" + uuid.uuid4().hex[:24], "custom_id": line["custom_id"],
                               "response": None, "error": {"code": "batch_expired", "message": "This request could "
                                                           "not be executed before the completion window expired."}})
                with self._lock:
                    batch["counts"]["failed"] += 1
                continue
            purpose = str(line["custom_id"]).split(":", 1)[0]
            fault = self.batch_line_fault(line) if self.batch_line_fault else None
            if fault is not None:
                status, data = int(fault), {"error": {"message": f"Injected fault: HTTP {fault}.",
                                                      "type": "server_error", "param": None, "code": str(fault)}}
            else:
                status, data = self.chat_completion(line["body"] if isinstance(line["body"], dict) else {}, purpose)
            record = {"id": "batch_req_" + uuid.uuid4().hex[:24], "custom_id": line["custom_id"],
                      "response": {"status_code": status, "request_id": uuid.uuid4().hex, "body": data},
                      "error": None}
            (outputs if status == 200 else errors).append(record)
            with self._lock:
                batch["counts"]["completed" if status == 200 else "failed"] += 1
                self.batch_lines_answered += 1
            self._sleep(timing.get("per_line", 0.0))
        with self._lock:
            if batch["status"] != "cancelling":
                batch["status"] = "finalizing"
        self._sleep(timing.get("finalizing", 0.0))

        def as_file(records: list[dict[str, Any]], name: str) -> str | None:
            if not records:
                return None
            data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")
            return self._add_file(data, "batch_output", name)["id"]

        output_id, error_id = as_file(outputs, "batch_output.jsonl"), as_file(errors, "batch_errors.jsonl")
        with self._lock:
            batch["output_file_id"], batch["error_file_id"] = output_id, error_id
            batch["status"] = ("cancelled" if batch["cancel"].is_set() else
                               "expired" if batch["outcome"] == "expired" else "completed")

    def batches_created(self) -> int:
        """How many batch jobs were created (POST /v1/batches answered 200)."""
        with self._lock:
            return len(self.batches)

    # -- chat replies (the HTTP route and the batch lines answer the same way) ---------------------------
    def chat_completion(self, body: dict[str, Any], purpose: str) -> tuple[int, dict[str, Any]]:
        """(HTTP status, JSON body) of a chat request, faults aside: a chat.completion or an error body."""
        def error(status: int, message: str, kind: str = "invalid_request_error") -> tuple[int, dict[str, Any]]:
            return status, {"error": {"message": message, "type": kind, "param": None, "code": str(status)}}

        model = str(body.get("model") or "stub")
        messages = body.get("messages") or []
        if not isinstance(messages, list):
            return error(400, "`messages` must be a list.")
        reasoning = self.is_reasoning_model(model)
        if reasoning:
            rejected = _reasoning_param_error(body)
            if rejected is not None:
                return 400, {"error": rejected}
        fmt = body.get("response_format")
        fmt_type = fmt.get("type") if isinstance(fmt, dict) else None
        if fmt_type in ("json_schema", "json_object") and fmt_type not in self.structured:
            # Like a server that does not know this form (llama-cpp-python answers 500 to json_schema).
            return error(self.structured_error, f"response_format type {fmt_type!r} is not supported.")
        try:
            if fmt_type and self.handler is _default_handler():
                reply = scripted_structured_reply(messages, purpose)
            else:
                reply = self.handler(messages, purpose)
        except Exception as e:  # a broken test handler shows as a server error, like a real crash
            return error(500, f"Stub handler failed: {type(e).__name__}: {e}", "server_error")
        max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
        finish = "stop"
        hidden = 0
        if reasoning:  # hidden reasoning comes out of the same cap
            hidden = min(self.reasoning_tokens, max_tokens) if isinstance(max_tokens, int) else self.reasoning_tokens
            if isinstance(max_tokens, int):
                max_tokens -= hidden
        if isinstance(max_tokens, int):
            reply, cut = _truncate(reply, max_tokens)
            finish = "length" if cut else "stop"
        prompt_tokens = sum(count_tokens(_content_text(m.get("content"))) + 4
                            for m in messages if isinstance(m, dict)) + 3
        completion_tokens = count_tokens(reply) + hidden
        usage: dict[str, Any] = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                                 "total_tokens": prompt_tokens + completion_tokens}
        if reasoning:
            usage["completion_tokens_details"] = {"reasoning_tokens": hidden}
        return 200, {
            "id": "chatcmpl-" + uuid.uuid4().hex[:12],
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": "evolab-stub",
            "choices": [{"index": 0, "finish_reason": finish, "logprobs": None,
                         "message": {"role": "assistant", "content": reply}}],
            "usage": usage,
        }

    # -- records --------------------------------------------------------------------------------
    def _record(self, req: BaseHTTPRequestHandler, body: Any) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "method": req.command,
            "path": req.path,
            "purpose": req.headers.get("X-Evolab-Purpose") or "",
            "body": body,
            "headers": {k.lower(): v for k, v in req.headers.items()},
            "time": time.time(),
            "status": None,  # the HTTP status answered (None: no answer, e.g. "disconnect")
            "usage": None,  # the usage the stub reported, for successful replies
        }
        with self._lock:
            self.requests.append(entry)
            if isinstance(body, dict) and body.get("model") and str(body["model"]) not in self.models:
                self.models.append(str(body["model"]))
        return entry

    def chat_requests(self, purpose: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [r for r in self.requests if r["path"].split("?")[0].rstrip("/").endswith("/chat/completions")
                    and (purpose is None or r["purpose"] == purpose)]

    def count(self, purpose: str | None = None) -> int:
        """How many chat requests arrived (faulted ones included), optionally of one purpose."""
        return len(self.chat_requests(purpose))

    def reset(self) -> None:
        """Forget recorded requests and the in-flight high-water mark (faults stay queued)."""
        with self._lock:
            self.requests.clear()
            self.max_in_flight = 0

    def is_reasoning_model(self, model: str) -> bool:
        base = re.sub(r"-(?:\d{4}-\d{2}-\d{2}|\d{4})$", "", model)
        return model in self.reasoning_models or base in self.reasoning_models

    # -- rate limits ----------------------------------------------------------------------------------
    def _roll_window(self, now: float) -> float:
        """Start a new window when the current one is over; seconds left in it. Hold the lock."""
        index = int((now - self._t0) // self.window_s)
        if index != self._window:
            self._window, self._window_requests, self._window_tokens = index, 0, 0
        return self._t0 + (index + 1) * self.window_s - now

    def _per_window(self, per_minute: float) -> float:
        return per_minute * self.window_s / 60.0

    def _take_slot(self) -> bool:
        """A place among the `max_concurrent` served at once, after waiting in the queue if it has room; False:
        the server is full (the request is refused)."""
        if self.max_concurrent is None:
            return True
        with self._slots:
            if self._serving >= self.max_concurrent:
                if self._waiting >= self.queue:
                    return False
                self._waiting += 1
                try:
                    while self._serving >= self.max_concurrent and not self._stopping.is_set():
                        self._slots.wait(0.05)
                finally:
                    self._waiting -= 1
            self._serving += 1
        return True

    def _free_slot(self) -> None:
        if self.max_concurrent is None:
            return
        with self._slots:
            self._serving -= 1
            self._slots.notify()

    def _rate_limited(self, body: dict[str, Any]) -> float | None:
        """Count a chat request against the window (and the quantum); None when it is within the limit, else the
        seconds until the window that refused it ends (then it is not counted)."""
        if self.rpm is None and self.tpm is None:
            return None
        messages = body.get("messages") if isinstance(body.get("messages"), list) else []
        max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
        cost = sum(count_tokens(_content_text(m.get("content"))) + 4 for m in messages if isinstance(m, dict)) + 3
        cost += max_tokens if isinstance(max_tokens, int) else 16
        with self._lock:
            now = time.monotonic()
            left_s = self._roll_window(now)
            if ((self.rpm is not None and self._window_requests + 1 > self._per_window(self.rpm)) or
                    (self.tpm is not None and self._window_tokens >= self._per_window(self.tpm))):
                return left_s
            if self.quantum_s:
                index = int((now - self._t0) // self.quantum_s)
                if index != self._quantum:
                    self._quantum, self._quantum_requests, self._quantum_tokens = index, 0, 0
                scale = self.quantum_s / 60.0
                if ((self.rpm is not None and self._quantum_requests + 1 > self.rpm * scale) or
                        (self.tpm is not None and self._quantum_tokens >= self.tpm * scale)):
                    return self._t0 + (index + 1) * self.quantum_s - now
                self._quantum_requests += 1
                self._quantum_tokens += cost
            self._window_requests += 1
            self._window_tokens += cost
        return None

    def _ratelimit_headers(self, limited: bool = False, retry_s: float | None = None) -> dict[str, str]:
        """x-ratelimit-* headers of the current window (if enabled), plus Retry-After on a 429."""
        if self.rpm is None and self.tpm is None:
            return {}
        with self._lock:
            left_s = self._roll_window(time.monotonic())
            used = {"requests": (self.rpm, self._window_requests), "tokens": (self.tpm, self._window_tokens)}
        headers: dict[str, str] = {}
        if self.ratelimit_headers:
            for kind, (per_minute, count) in used.items():
                if per_minute is None:
                    continue
                limit = int(self._per_window(per_minute))
                headers[f"x-ratelimit-limit-{kind}"] = str(limit)
                headers[f"x-ratelimit-remaining-{kind}"] = str(max(0, limit - count))
                headers[f"x-ratelimit-reset-{kind}"] = format_reset(left_s if count else 0.0)
        if limited and self.ratelimit_retry_after:
            wait_s = left_s if retry_s is None else retry_s
            headers["retry-after-ms"] = str(max(1, math.ceil(wait_s * 1000)))
            headers["retry-after"] = str(max(1, math.ceil(wait_s)))
        return headers

    def rate_limited_count(self) -> int:
        """Chat requests answered 429 (the openai client's own retries included)."""
        return sum(1 for r in self.chat_requests() if r["status"] == 429)

    def model_ids(self) -> list[str]:
        with self._lock:
            return list(self.models)

    # -- timing ---------------------------------------------------------------------------------
    def _latency(self) -> float:
        value = self.latency() if callable(self.latency) else self.latency
        return max(0.0, float(value or 0.0))

    def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            self._stopping.wait(seconds)  # stop() wakes sleeping handlers


def _reasoning_param_error(body: dict[str, Any]) -> dict[str, Any] | None:
    """OpenAI's 400 error for a reasoning model given max_tokens or a non-default temperature/top_p (word for
    word), or None."""
    if body.get("max_tokens") is not None:
        return {"message": "Unsupported parameter: 'max_tokens' is not supported with this model. "
                           "Use 'max_completion_tokens' instead.",
                "type": "invalid_request_error", "param": "max_tokens", "code": "unsupported_parameter"}
    for param in ("temperature", "top_p"):
        value = body.get(param)
        if value is not None and value != 1:
            return {"message": f"Unsupported value: '{param}' does not support {value} with this model. "
                               "Only the default (1) value is supported.",
                    "type": "invalid_request_error", "param": param, "code": "unsupported_value"}
    return None


def format_reset(seconds: float) -> str:
    """A duration as OpenAI writes x-ratelimit-reset-*: "20ms", "1.5s", "6m0s", "1m30.5s"."""
    if seconds < 1:
        return f"{max(0, round(seconds * 1000))}ms"
    minutes, rest = divmod(seconds, 60.0)
    text = f"{rest:.3f}".rstrip("0").rstrip(".") + "s"
    return f"{int(minutes)}m{text}" if minutes else text


def _check_fault(fault: Fault) -> Fault:
    if isinstance(fault, bool) or not (
            (isinstance(fault, int) and 400 <= fault <= 599) or fault in FAULT_NAMES):
        raise ValueError(f"Unknown fault {fault!r}: use an HTTP status 400-599 or one of {FAULT_NAMES}.")
    return fault


def _multipart_file(content_type: str, raw: bytes) -> tuple[str, str, bytes]:
    """(purpose, filename, bytes) of a files-API upload (multipart/form-data with `purpose` and `file`)."""

    if not content_type.startswith("multipart/form-data"):
        raise ValueError("Upload a file as multipart/form-data with the fields purpose and file.")
    msg = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + raw)
    purpose, filename, data = "", "upload", None
    for part in msg.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if name == "purpose":
            purpose = (part.get_payload(decode=True) or b"").decode("utf-8")
        elif name == "file":
            filename = part.get_filename() or filename
            data = part.get_payload(decode=True) or b""
    if data is None:
        raise ValueError("The upload has no `file` field.")
    if purpose != "batch":
        raise ValueError(f"purpose must be 'batch', not {purpose!r}.")
    return purpose, filename, data
