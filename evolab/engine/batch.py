"""A round as batch jobs: the OpenAI Batch API, vLLM's run-batch, or any service that reads the same JSONL.

Not a second engine. A live batch run (`run_batched`) runs the ordinary Engine once, in one event loop, with a
client that answers from the request cache and, for a call that is not cached, adds the request (custom_id,
method, url, body) to the next job and waits for its answer. When every step is waiting, the waiting requests
go out as one job; its results go into the cache and the calls table (flagged batch, at the batch price) and
wake the steps that asked, which go on as an online step would. So a batch run and an online run with the same
random seed make the same nodes, calls, scores and verdicts: node ids and operation choices come from (run,
parent, round, slot, seed), never from timing. Stages follow in order (evolve, cheap checks, respond, checks,
equality judge, scores) because a step's next call only exists once its previous one is answered.

Jobs are stored the moment they are created: a killed process replays the run against the cache (the same
requests come out) and polls the job it had submitted instead of submitting it again. Batch export/import
(a process per stage) runs one *pass* instead: the engine as far as the cache goes, the first call of a step
that is not cached written to the file, that step stopped there.
"""
from __future__ import annotations

import asyncio
import json
import random
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable

from evolab.engine import eliminator
from evolab.engine.lease import leased
from evolab.engine.pipeline import MAX_FAILED_STEPS_IN_A_ROW, Engine, RunStopped, expected_steps
from evolab.engine.scoring import chosen_scorers
from evolab.llm.base import Backend, Completion, LLMError, Messages, mask_secrets
from evolab.llm.base import json_kind as _kind
from evolab.llm.base import message_text as reply_text
from evolab.llm.base import short_json as _short_json
from evolab.llm.client import LLMClient, make_backend, params_meta_key
from evolab.llm.openai_backend import quirks_from_error, resolve_api_key, sampling_params
from evolab.llm.pricing import Price, resolve_batch_price
from evolab.schema import LLMCall, Node, RunConfig
from evolab.store import Store

BATCH_URL = "/v1/chat/completions"
FINAL_STATES = ("completed", "failed", "expired", "cancelled")
FALLBACKS = ("resubmit", "online")
DEFAULT_MAX_ATTEMPTS = 3
# OpenAI's limits for one job: 50,000 requests and an input file of 200 MB; a stage with more goes out as several.
DEFAULT_MAX_REQUESTS = 50_000
DEFAULT_MAX_MB = 200
# A job the provider refused because its queue of enqueued tokens is full (OpenAI: "Enqueued token limit reached
# ... Please try again once some in_progress batches have been completed"): not the lines' fault.
QUEUE_FULL = "token_limit_exceeded"
MAX_POLL_ERRORS = 5  # status polls failing in a row before the run stops (resume polls the job again)


class NotAnswered(BaseException):
    """The step's next request went into this pass's batch; the step waits for the next pass. A BaseException,
    so that no `except Exception`/`except LLMError` on the way up turns it into a failed step."""


class BatchCancelled(Exception):
    """A job this process was polling was cancelled (from the CLI or the app)."""


class BatchError(RuntimeError):
    """The batch service refused something; the message says what to do."""


@dataclass
class BatchRequest:
    key: str  # the request cache key
    purpose: str
    node_id: str | None
    body: dict[str, Any]

    @property
    def custom_id(self) -> str:
        # The purpose in front tells an evolve from a judge call in the output (and lets the stub script replies).
        return f"{self.purpose}:{self.key}"

    def line(self) -> dict[str, Any]:
        return {"custom_id": self.custom_id, "method": "POST", "url": BATCH_URL, "body": self.body}


def request_body(backend: Backend, messages: Messages, *, temperature: float, max_tokens: int,
                 response_format: dict[str, Any] | None = None) -> dict[str, Any]:
    """The chat body the online backend would post for this call (the model's parameter quirks included)."""

    quirks = set(getattr(backend, "param_quirks", None) or ())
    body: dict[str, Any] = {"model": backend.model, "messages": messages,
                            **sampling_params(quirks, temperature, max_tokens)}
    if response_format:
        body["response_format"] = response_format
    return body


# -- the client and the engine ----------------------------------------------------------------------------
# What a parked call's future resolves to: the batch answered it (its cache row), it goes online, or the batch
# gave up on it (the error).
ANSWERED, ONLINE, GIVEN_UP = "answered", "online", "given_up"


class CollectingClient(LLMClient):
    """The run's client in batch mode: cache hits as usual; a miss becomes a batch request. With `park` (a live
    run, `run_batched`) the call waits for the job that answers it; without (one pass: batch export/import) it
    raises NotAnswered and the step stops there. A request the batch gave up on is an LLMError; one that falls
    back to online is sent online."""

    def __init__(self, backend: Backend, store: Store, *, given_up: dict[str, str], online_keys: set[str],
                 recorded: set[tuple[str, str | None]], online_price: Price | None, park: bool = False,
                 **kwargs: Any):
        super().__init__(backend, store, **kwargs)
        self.requests: dict[str, BatchRequest] = {}  # the requests no job has answered yet, in the order asked
        self.given_up, self.online_keys, self.recorded = given_up, online_keys, recorded
        self.online_price = online_price
        self.park = park
        self.parked: dict[str, asyncio.Future] = {}  # request key -> what its callers wait on
        self.online_in_flight = 0  # online calls on their way (the run is not waiting for the batch meanwhile)
        self._asked: dict[str, tuple[Messages, dict[str, Any]]] = {}  # a parked request's messages and sampling

    async def _send(self, messages: Messages, *, key: str, node_id: str | None, **kw: Any) -> Completion:
        if key in self.online_keys:
            return await self._send_online(messages, key=key, node_id=node_id, **kw)
        if key in self.given_up:
            raise self._give_up(key, node_id, kw.get("purpose", ""))
        if key not in self.requests:
            sampling = {"temperature": kw["temperature"], "max_tokens": kw["max_tokens"],
                        "response_format": kw.get("response_format")}
            self.requests[key] = BatchRequest(key, kw.get("purpose", ""), node_id,
                                              request_body(self.backend, messages, **sampling))
            if self.park:
                self._asked[key] = (messages, sampling)
            if not self.park:
                # The budget holds the worst case of every request in the job until it is answered (a parked
                # call keeps the reservation `complete` made for it while it waits).
                usd, tokens, _ = self._reservation(messages, kw["max_tokens"])
                self._reserved_usd += usd
                self._reserved_tokens += tokens
        if not self.park:
            raise NotAnswered(key)
        waiting = self.parked.get(key)
        if waiting is None:
            waiting = self.parked[key] = asyncio.get_running_loop().create_future()
        outcome, value = await waiting
        if outcome == ANSWERED:  # already in the cache and the calls table, and counted (see deliver)
            return Completion(**value, cached=True, request_hash=key, price_known=self.price is not None)
        if outcome == ONLINE:
            return await self._send_online(messages, key=key, node_id=node_id, **kw)
        raise self._give_up(key, node_id, kw.get("purpose", ""))

    async def _send_online(self, messages: Messages, *, key: str, node_id: str | None, **kw: Any) -> Completion:
        self.online_keys.add(key)
        self.online_in_flight += 1
        try:
            return await super()._send(messages, key=key, node_id=node_id, **kw)
        finally:
            self.online_in_flight -= 1

    def _give_up(self, key: str, node_id: str | None, purpose: str) -> LLMError:
        error = LLMError(f"The batch jobs did not answer this request: {self.given_up[key]}")
        self._record(purpose, node_id, Completion(text="", model=self.model, request_hash=key), str(error))
        return error

    def deliver(self, answered: dict[str, tuple[dict[str, Any], LLMCall]], failures: dict[str, tuple[int, str]],
                *, fallback_online: bool, max_attempts: int) -> None:
        """After a job's import: wake the calls it answered (its cache rows and call rows are stored: count their
        cost, and do not record them again), and those it failed for good (or that go online now). The rest of
        its failed lines stay parked for the next job."""
        for key, (_row, call) in answered.items():
            self.spent_usd += call.cost_usd
            self.spent_tokens += call.prompt_tokens + call.completion_tokens
            self.recorded.add((key, call.node_id))
        for key in list(self.parked):
            if key in answered:
                outcome: tuple[str, Any] = (ANSWERED, answered[key][0])
            elif key in failures and fallback_online:
                outcome = (ONLINE, None)
            elif key in failures and failures[key][0] >= max_attempts:
                self.given_up[key] = failures[key][1]
                outcome = (GIVEN_UP, None)
            else:
                continue
            self.requests.pop(key, None)
            self._asked.pop(key, None)
            self.parked.pop(key).set_result(outcome)

    def relearn_params(self) -> None:
        """Load the parameter quirks a job's failed lines taught (a reasoning model's `max_completion_tokens`, see
        _learn_param_quirks) and rewrite the waiting requests' bodies with them, so the next job sends them right."""
        quirks = getattr(self.backend, "param_quirks", None)
        if quirks is None:
            return
        before = set(quirks)
        self._load_param_quirks()
        if self.backend.param_quirks != before:
            for key, req in self.requests.items():
                messages, sampling = self._asked[key]
                req.body = request_body(self.backend, messages, **sampling)

    def _account(self, comp: Completion, counted_prompt: int = 0) -> None:
        if comp.request_hash in self.online_keys:  # sent online: billed at the online price
            batch_price, self.price = self.price, self.online_price
            try:
                super()._account(comp, counted_prompt)
            finally:
                self.price = batch_price
        else:
            super()._account(comp, counted_prompt)

    def _record(self, purpose: str, node_id: str | None, comp: Completion, error: str | None) -> None:
        # Each (request, node) is stored once: a batch answer's call row was written when its job was imported,
        # and one pass of export/import replays the calls answered before.
        mark = (comp.request_hash or "", node_id)
        if comp.request_hash and mark in self.recorded:
            return
        self.recorded.add(mark)
        super()._record(purpose, node_id, comp, error)


class BatchEngine(Engine):
    """The Engine for one pass (batch export/import): a step waiting for the batch is not finished, so the
    novelty check of round r (which compares with every lineage's round r - 1) waits for the next pass when any
    step of round r - 1 waits."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.waiting_rounds: set[int] = set()

    async def evolve_child(self, parent: Node, round_: int, *args: Any, **kwargs: Any):
        try:
            return await super().evolve_child(parent, round_, *args, **kwargs)
        except NotAnswered:
            self.waiting_rounds.add(round_)
            raise

    async def novelty_pool(self, node: Node) -> list[str]:
        await self._round_finished(node.round - 1)
        if any(r < node.round for r in self.waiting_rounds):
            raise NotAnswered("novelty pool")
        return await super().novelty_pool(node)


class WaitingEngine(Engine):
    """The Engine of a live batch run: a step whose next call went into the batch waits for the job's answer
    (its client call is parked) and goes on from there, so each step runs once, as online."""

    threads_in_flight = 0  # store flushes on their way (the run is not waiting for the batch meanwhile)

    async def _flush(self) -> None:
        self.threads_in_flight += 1
        try:
            await super()._flush()
        finally:
            self.threads_in_flight -= 1


@dataclass
class PassResult:
    requests: list[BatchRequest]
    stop_reason: str | None = None
    failed_in_a_row: int = 0
    last_error: str | None = None
    counts: dict[str, int] = field(default_factory=dict)


def _batch_client(store: Store, run_id: str, config: RunConfig, backend: Backend, *, park: bool,
                  fallback_online: bool, max_attempts: int, stop_event: threading.Event | None) -> CollectingClient:
    """The run's client: billed at the batch price (online fallbacks at the online one); the lines earlier jobs
    failed go online or, once they failed `max_attempts` times, are given up."""
    failures = store.batch_line_failures(run_id)
    online = {k for k in failures if fallback_online}
    given_up = {k: error for k, (n, error) in failures.items() if not fallback_online and n >= max_attempts}
    client = CollectingClient(
        backend, store, run_id=run_id, concurrency=config.concurrency, budget_usd=config.budget_usd,
        structured=config.structured, budget_tokens=config.budget_tokens, price=config.price,
        prices_file=config.prices_file, rpm=config.rpm, tpm=config.tpm, stop_event=stop_event,
        given_up=given_up, online_keys=online, recorded=store.call_keys(run_id), online_price=None, park=park)
    client.online_price = client.price
    client.price = resolve_batch_price(backend.model, price=config.price, prices_file=config.prices_file)
    return client


async def run_pass(store: Store, run_id: str, backend: Backend | None = None, *, until_round: int | None = None,
                   stop_event: threading.Event | None = None, progress: Callable | None = None) -> PassResult:
    """One pass (batch export/import, a process each): run the engine over the whole run as far as the cache
    goes; the requests the next job must answer."""
    run = store.get_run(run_id)
    config: RunConfig = run["config"]
    # A backend of this pass's event loop (its connection pool cannot outlive the loop), unless one is given.
    own_backend = backend is None
    backend = backend or make_backend(config)
    client = _batch_client(store, run_id, config, backend, park=False, fallback_online=False,
                           max_attempts=DEFAULT_MAX_ATTEMPTS, stop_event=stop_event)
    engine = BatchEngine(store, run_id, client, config, progress=progress, stop_event=stop_event)
    await _pin_structured_mode(store, run_id, client)
    seeds = run["seeds"]
    until = min(until_round or config.rounds, config.rounds)
    engine.expected = expected_steps(len(seeds), until, config.fanout)
    roots = engine.seed_nodes(seeds)
    engine._lineages = len(roots)
    jobs = [engine.run_lineage(r, until) for r in roots]
    if config.score_seeds:
        jobs += [engine.finish_seed(r) for r in roots]
    results = list(await asyncio.gather(*jobs, return_exceptions=True))
    # A step's parallel calls (difficulty and quality) may still be on their way to the collector.
    me = asyncio.current_task()
    await asyncio.gather(*(t for t in asyncio.all_tasks() if t is not me), return_exceptions=True)
    await asyncio.to_thread(store.flush)
    if own_backend:
        await backend.aclose()
    errors = [r for r in results if isinstance(r, BaseException) and not isinstance(r, (RunStopped, NotAnswered))]
    if errors:
        raise errors[0]
    return PassResult(list(client.requests.values()), engine.stop_reason, engine.failed_in_a_row,
                      engine.last_error, dict(engine.counts))


async def _until_all_wait(done: asyncio.Future, client: CollectingClient, engine: WaitingEngine,
                          interval_s: float = 0.005) -> None:
    """Return when the run is done, or when every step waits for the batch: nothing is ready to run in the event
    loop and no online call or store flush is on its way, seen twice in a row (a step that was woken in between
    would be ready the second time). A step waiting for another (the novelty check waits for the other lineages'
    round) waits, in the end, for the batch too."""
    loop = asyncio.get_running_loop()
    ready = getattr(loop, "_ready", None)  # asyncio's own event loops: the callbacks ready to run
    quiet, last = 0, None
    while not done.done():
        await asyncio.sleep(0 if quiet else interval_s)
        if client.online_in_flight or engine.threads_in_flight:
            quiet = 0
        elif ready is not None:
            quiet = 0 if ready else quiet + 1
        else:  # another event loop: nothing new parked over a few intervals
            now = (len(client.requests), sum(engine.counts.values()))
            quiet, last = (quiet + 1 if now == last else 0), now
            await asyncio.sleep(interval_s * 10)
        if quiet >= 2:
            return


async def _pin_structured_mode(store: Store, run_id: str, client: LLMClient) -> None:
    """Every pass asks for JSON the same way (the cache key holds the response_format): the first pass's mode
    is kept for the run, even when the endpoint could not be probed then (a batch-only service)."""
    key = f"batch_structured|{run_id}"
    pinned = store.get_meta(key)
    if pinned is not None:
        client._structured_mode = pinned
        return
    try:
        mode = await client.structured_mode()
    except LLMError:
        if client.structured != "on":
            raise
        mode = "json_schema"  # could not ask (a batch-only service): OpenAI's and vLLM's form
    store.set_meta(key, mode)


# -- the batch service -------------------------------------------------------------------------------------
@dataclass
class PollPolicy:
    """How often to ask a job's status: from `first_s`, times `factor` each time, at most `max_s`, each wait
    shortened by up to `jitter` (a share) so that many runs do not poll in step."""

    first_s: float = 5.0
    max_s: float = 60.0
    factor: float = 1.5
    jitter: float = 0.2

    def waits(self) -> Iterable[float]:
        wait = self.first_s
        while True:
            yield max(0.0, wait * (1 - self.jitter * random.random()))
            wait = min(self.max_s, wait * self.factor)


class OpenAIBatches:
    """The OpenAI files and batches API (OpenAI itself, or any service with the same endpoints)."""

    engine = "openai"

    def __init__(self, config: RunConfig, timeout_s: float = 300.0):
        import openai  # heavy: about 0.4 s, only when an endpoint is called


        if not config.base_url:
            raise BatchError("--batch needs an endpoint with a batch API (--base-url, e.g. https://api.openai.com/v1); "
                             "the embedded model answers online only. For vLLM, use batch export / batch import.")
        self._openai = openai
        key = resolve_api_key(config.api_key_env, config.base_url,
                              restrict_names=getattr(config, "restrict_key_env", False))
        self.client = openai.OpenAI(base_url=config.base_url, api_key=key, timeout=timeout_s,
                                    max_retries=config.max_retries)

    def _call(self, what: str, fn: Callable[[], Any]) -> Any:
        openai = self._openai
        try:
            return fn()
        except openai.AuthenticationError as e:
            raise BatchError(f"The batch service rejected the key (401) on {what}: check the key variable. "
                             f"{mask_secrets(str(e))[:300]}") from e
        except openai.NotFoundError as e:
            raise BatchError(f"The endpoint has no {what} (404): does it offer OpenAI's Batch API? Otherwise use "
                             f"batch export / batch import. {mask_secrets(str(e))[:300]}") from e
        except openai.APIError as e:
            raise BatchError(f"The batch service failed on {what}: {mask_secrets(str(e))[:300]}") from e

    def upload(self, data: bytes) -> str:
        return self._call("file upload", lambda: self.client.files.create(
            file=("requests.jsonl", data, "application/jsonl"), purpose="batch")).id

    def create(self, input_file_id: str) -> dict[str, Any]:
        return self._call("batch creation", lambda: self.client.batches.create(
            input_file_id=input_file_id, endpoint=BATCH_URL, completion_window="24h")).model_dump()

    def retrieve(self, batch_id: str) -> dict[str, Any]:
        return self._call("batch status", lambda: self.client.batches.retrieve(batch_id)).model_dump()

    def find_by_input(self, input_file_id: str) -> dict[str, Any] | None:
        """The job made from this uploaded file, if the create call went through before a kill."""
        for b in self._call("batch list", lambda: list(self.client.batches.list(limit=100))):
            if b.input_file_id == input_file_id:
                return b.model_dump()
        return None

    def content(self, file_id: str) -> bytes:
        return self._call("file download", lambda: self.client.files.content(file_id).content)

    def cancel(self, batch_id: str) -> dict[str, Any]:
        return self._call("batch cancel", lambda: self.client.batches.cancel(batch_id)).model_dump()


# -- results ----------------------------------------------------------------------------------------------
class ResultsFileError(BatchError):
    """A results file evolab cannot read: missing, not a regular file, not UTF-8, or a line that is not a batch
    result (not JSON, no string custom_id, usage that is not counts). The message names the file and the line;
    raised before anything is written. `batch import` turns it into exit status 2."""


# A usage count above this is no reply's (and a number SQLite and the prices could not hold).
MAX_TOKEN_COUNT = 2 ** 53


class _BadLine(ValueError):
    """Why one line of a results file is not a batch result; `custom_id` when the line still names its request."""

    def __init__(self, reason: str, custom_id: str | None = None):
        super().__init__(reason)
        self.custom_id = custom_id


def _lines(data: bytes | str) -> Iterable[tuple[int, bytes]]:
    """A JSONL file's lines, numbered from 1. Split on "\\n" only: U+2028 and the other characters str.splitlines
    breaks at may sit unescaped inside a JSON string."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    for n, line in enumerate(raw.split(b"\n"), 1):
        yield n, line[3:] if n == 1 and line.startswith(b"\xef\xbb\xbf") else line  # a BOM is not the line's


def _usage_count(usage: dict[str, Any], name: str, where: str = "usage") -> int:
    value = usage.get(name)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_TOKEN_COUNT:
        raise _BadLine(f"{where}.{name} must be a whole number of tokens, 0 or more, not {_short_json(value)}")
    return value


def _usage(body: dict[str, Any]) -> tuple[int, int, int]:
    """(prompt, completion, reasoning) tokens of a chat body's usage: non-negative integers, or the line is bad
    (a negative count would be a negative cost that slips past the budget)."""
    usage = body.get("usage")
    if usage is None:
        return 0, 0, 0
    if not isinstance(usage, dict):
        raise _BadLine(f"usage must be an object of token counts, not {_kind(usage)}")
    details = usage.get("completion_tokens_details")
    if details is not None and not isinstance(details, dict):
        raise _BadLine(f"usage.completion_tokens_details must be an object, not {_kind(details)}")
    return (_usage_count(usage, "prompt_tokens"), _usage_count(usage, "completion_tokens"),
            _usage_count(details or {}, "reasoning_tokens", "usage.completion_tokens_details"))


def completion_from_body(body: dict[str, Any], model: str) -> Completion:
    """The Completion the online backend reads from the same chat body (text, usage, finish reason). A body
    whose reply is not text (see reply_text) is a ValueError; so is usage that is not token counts."""
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise ValueError(f"choices must be a list of objects, not {_short_json(choices)}")
    choice = choices[0]
    text = reply_text(choice.get("message"))
    finish = choice.get("finish_reason")
    if finish is not None and not isinstance(finish, str):
        raise ValueError(f"finish_reason must be a string, not {_short_json(finish)}")
    name = body.get("model")
    try:
        prompt, completion, reasoning = _usage(body)
    except _BadLine as e:
        raise ValueError(str(e)) from None
    return Completion(text=text, model=name if isinstance(name, str) and name else model, prompt_tokens=prompt,
                      completion_tokens=completion, finish_reason=finish, reasoning_tokens=reasoning)


def _read_line(raw: bytes) -> tuple[str, Completion | None, str | None] | None:
    """One line of a results file: (custom_id, the answer, None) or (custom_id, None, the error); None for a
    blank line. _BadLine when it is not a batch result (with its custom_id when it has a readable one)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _BadLine("not UTF-8 text") from None
    if not text.strip():
        return None
    try:
        line = json.loads(text)
    except RecursionError:
        raise _BadLine("nested too deeply to be a batch result") from None
    except ValueError as e:
        raise _BadLine(f"not JSON ({e})") from None
    if not isinstance(line, dict):
        raise _BadLine(f"a batch result is a JSON object with a custom_id, not {_kind(line)}")
    custom_id = line.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        raise _BadLine(f"custom_id must be a string, not {_short_json(custom_id)}")
    response = line.get("response")
    if response is not None and not isinstance(response, dict):
        raise _BadLine(f"response must be an object, not {_kind(response)}", custom_id)
    response = response or {}
    status, body = response.get("status_code"), response.get("body")
    if status is not None and (isinstance(status, bool) or not isinstance(status, int)):
        raise _BadLine(f"response.status_code must be a number, not {_short_json(status)}", custom_id)
    err = line.get("error")
    if err:
        message = f"{err.get('code')}: {err.get('message')}" if isinstance(err, dict) else str(err)
        return custom_id, None, message[:500]
    if status == 200 and isinstance(body, dict) and body.get("choices"):
        _usage(body)  # bad counts: a bad file (they would be billed)
        try:
            return custom_id, completion_from_body(body, ""), None
        except ValueError as e:  # a reply that is not text: a failed line, asked again (never cached)
            return custom_id, None, f"unreadable reply: {e}"
    err = body.get("error") if isinstance(body, dict) else None
    message = err.get("message") if isinstance(err, dict) else json.dumps(body, ensure_ascii=False)[:200]
    return custom_id, None, f"HTTP {status}: {str(message)[:400]}"


def read_results(data: bytes | str, source: str = "the results",
                 problems: list[str] | None = None) -> tuple[dict[str, Completion], dict[str, str]]:
    """An output or error file (OpenAI's format, also vLLM run-batch's): ({custom_id: its answer} answered,
    {custom_id: error} failed). Every line is checked. A line that is not a batch result is a ResultsFileError
    naming `source` and the line; with `problems` (a provider's file, which nobody can fix) it is listed there
    instead, and its request, when the line names one, is a failed line."""
    answered: dict[str, Completion] = {}
    failed: dict[str, str] = {}
    for n, raw in _lines(data):
        try:
            read = _read_line(raw)
        except (_BadLine, RecursionError) as e:
            reason = str(e) if isinstance(e, _BadLine) else "nested too deeply to be a batch result"
            shown = raw[:120].decode("utf-8", "replace")
            message = f"Line {n} of {source} is not a batch result: {reason}. It reads {shown!r}"
            if problems is None:
                raise ResultsFileError(message + "; fix or remove that line, then import again (nothing was "
                                                 "imported).") from None
            problems.append(message)
            custom_id = getattr(e, "custom_id", None)
            if custom_id:
                answered.pop(custom_id, None)
                failed[custom_id] = f"unreadable result: {reason}"
            continue
        if read is None:
            continue
        custom_id, comp, error = read
        if comp is not None:
            failed.pop(custom_id, None)
            answered[custom_id] = comp
        else:
            answered.pop(custom_id, None)
            failed[custom_id] = error or "failed"
    return answered, failed


def import_results(store: Store, run_id: str, batch_id: int, requests: dict[str, BatchRequest],
                   answered: dict[str, Completion], failed: dict[str, str], price: Price | None,
                   *, missing_error: str | None = None,
                   delivered: dict[str, tuple[dict[str, Any], LLMCall]] | None = None) -> tuple[int, int]:
    """Write a job's results as online calls are written (cache row, call row flagged batch, at the batch
    price); failed lines (and, with `missing_error`, lines the job never answered) are kept for resubmission.
    Returns (answered, failed) counts; `delivered` gets each answered request's cache row and call row."""
    lines = store.batch_line_hashes(batch_id)
    rows, bad = [], []
    for custom_id, answer in answered.items():
        key = lines.get(custom_id) or custom_id.split(":", 1)[-1]
        req = requests.get(key)
        comp = replace(answer, model=answer.model or (str(req.body.get("model") or "") if req else ""))
        cost = price.cost(comp.prompt_tokens, comp.completion_tokens) if price else 0.0
        call = LLMCall(purpose=req.purpose if req else custom_id.split(":", 1)[0], model=comp.model,
                       prompt_tokens=comp.prompt_tokens, completion_tokens=comp.completion_tokens, latency_s=0.0,
                       cost_usd=cost, price_known=price is not None, cached=False, run_id=run_id,
                       node_id=req.node_id if req else None, request_hash=key, reasoning_tokens=comp.reasoning_tokens)
        rows.append((custom_id, key, comp.to_cache(), call))
    bad += [(cid, mask_secrets(err)) for cid, err in failed.items()]
    if missing_error:
        done = set(answered) | set(failed)
        bad += [(cid, missing_error) for cid in lines if cid not in done]
    store.import_batch_results(batch_id, rows, bad)
    if delivered is not None:
        delivered.update((key, (row, call)) for _cid, key, row, call in rows)
    return len(rows), len(bad)


# -- the loop ---------------------------------------------------------------------------------------------
@dataclass
class BatchOptions:
    poll: PollPolicy = field(default_factory=PollPolicy)
    fallback: str = "resubmit"  # failed lines: "resubmit" (up to max_attempts jobs), or "online" at once
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    max_requests: int = DEFAULT_MAX_REQUESTS  # per job (OpenAI: 50,000)
    max_bytes: int = DEFAULT_MAX_MB * 1_000_000  # a job's input file (OpenAI: 200 MB)

    def __post_init__(self) -> None:
        if self.fallback not in FALLBACKS:
            raise ValueError(f"fallback must be one of {FALLBACKS}, not {self.fallback!r}")
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.max_requests < 1 or self.max_bytes < 1:
            raise ValueError("max_requests and max_bytes must be at least 1")


@leased  # one engine per run, in any process (evolab/engine/lease.py)
def run_batched(store: Store, run_id: str, *, backend: Backend | None = None, transport: Any = None,
                options: BatchOptions | None = None, until_round: int | None = None,
                stop_event: threading.Event | None = None, progress: Callable | None = None,
                log: Callable[[str], None] | None = None) -> str:
    """Run (or resume) a stored run as batch jobs, one each time every step waits for one, until the run is
    done. Returns the final status, as `pipeline.run_sync` does."""
    run = store.get_run(run_id)
    if run is None:
        raise KeyError(f"No run {run_id!r} in {store.path}.")
    config: RunConfig = run["config"]
    options = options or BatchOptions()
    stop_event = stop_event or threading.Event()
    log = log or (lambda _msg: None)
    transport = transport or OpenAIBatches(config)
    price = resolve_batch_price(config.model, price=config.price, prices_file=config.prices_file)
    store.set_run_status(run_id, "running")

    async def passes() -> str:
        # One event loop for the whole run: every step runs once, as online, and a call that goes into a job
        # waits for it. When every step waits, the waiting requests go out as one job (or a job a killed process
        # had submitted for them is polled); polling blocks the loop, where nothing else could run anyway.
        pass_backend = backend or make_backend(config)
        params_key = params_meta_key(getattr(pass_backend, "endpoint", "") or "", pass_backend.model)
        client = _batch_client(store, run_id, config, pass_backend, park=True,
                               fallback_online=options.fallback == "online", max_attempts=options.max_attempts,
                               stop_event=stop_event)
        engine = WaitingEngine(store, run_id, client, config, progress=progress, stop_event=stop_event)
        tasks: list[asyncio.Future] = []
        try:
            await _pin_structured_mode(store, run_id, client)
            seeds = run["seeds"]
            until = min(until_round or config.rounds, config.rounds)
            engine.expected = expected_steps(len(seeds), until, config.fanout)
            tasks = [asyncio.ensure_future(job) for job in engine.lineage_jobs(engine.seed_nodes(seeds), until)]
            everything = asyncio.gather(*tasks, return_exceptions=True)
            job_no = 0
            queue = _ProviderQueue(options)
            while True:
                await _until_all_wait(everything, client, engine)
                _raise_unexpected(tasks)
                if everything.done():
                    break
                if stop_event.is_set():
                    raise _Stopped()
                requests = dict(client.requests)
                if not requests:
                    raise RuntimeError("Batch mode: every step waits, but for no request (please report this).")
                await engine._flush()  # every finished step is in the file before a job that may take a day
                delivered: dict[str, tuple[dict[str, Any], LLMCall]] = {}
                jobs = []
                for job in store.batches(run_id, open_only=True):  # submitted before (here or by a killed process)
                    if job["engine"] != transport.engine:
                        store.update_batch(job["id"], imported=1, status="superseded")
                        continue
                    log(f"polling job {job['provider_batch_id'] or job['id']} submitted earlier")
                    jobs.append(job)
                if not jobs:
                    parts = split_jobs(list(requests.values()), queue.max_requests, options.max_bytes)
                    if queue.one_at_a_time:
                        parts = parts[:1]  # the rest wait, as the provider asked
                    for lines, data in parts:
                        job_no += 1
                        log(f"job {job_no}: {len(lines)} requests -> a new batch job")
                        jobs.append(_submit(store, run_id, job_no, transport, lines, data))
                refused = [job for job in jobs  # every job is polled to its end before the steps go on
                           if _finish_job(store, run_id, job, transport, requests, price, options.poll, stop_event,
                                          log, params_key, delivered) == QUEUE_FULL]
                if refused:
                    queue.refused(refused, len(jobs), stop_event, log)
                client.relearn_params()
                client.deliver(delivered, store.batch_line_failures(run_id),
                               fallback_online=options.fallback == "online", max_attempts=options.max_attempts)
            await engine._flush()  # every step is in the file before the status says so
            return _finish(store, run_id, config, PassResult([], engine.stop_reason, engine.failed_in_a_row,
                                                             engine.last_error, dict(engine.counts)), until_round)
        finally:
            for task in tasks:  # a stop or an error: the steps still waiting end here (resume replays them)
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if backend is None:
                await pass_backend.aclose()

    try:
        return asyncio.run(passes())
    except BatchCancelled as e:
        store.set_run_status(run_id, "stopped", str(e))
        return "stopped"
    except _Stopped:
        store.set_run_status(run_id, "stopped", None)
        return "stopped"
    except BaseException as e:
        if isinstance(e, KeyboardInterrupt):
            store.set_run_status(run_id, "stopped", "interrupted")
        else:
            store.set_run_status(run_id, "failed", f"{type(e).__name__}: {mask_secrets(str(e))}")
        raise


@dataclass
class _ProviderQueue:
    """How much the provider's queue takes. A job refused because the queue of enqueued tokens is full is sent
    again, smaller (half the requests), after a wait when none of ours was in it; from then on one job at a time
    (a stage's other requests wait for the next)."""

    options: BatchOptions
    max_requests: int = field(init=False)
    one_at_a_time: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        self.max_requests = self.options.max_requests
        self._waits = iter(self.options.poll.waits())

    def refused(self, jobs: list[dict[str, Any]], submitted: int, stop_event: threading.Event,
                log: Callable[[str], None]) -> None:
        self.one_at_a_time = True
        self.max_requests = max(1, min(self.max_requests, max(j["n_requests"] for j in jobs)) // 2)
        log(f"the provider's queue is full: next jobs one at a time, of at most {self.max_requests} requests")
        if len(jobs) == submitted:  # none of ours was in the queue: wait for others' jobs to finish
            if stop_event.wait(next(self._waits)):
                raise _Stopped()


def split_jobs(requests: list[BatchRequest], max_requests: int, max_bytes: int) -> list[tuple[list[BatchRequest],
                                                                                           bytes]]:
    """The requests as jobs of at most `max_requests` lines and `max_bytes` of JSONL each (a line longer than
    `max_bytes` goes alone): [(requests, the job's input file)]."""
    jobs: list[tuple[list[BatchRequest], bytes]] = []
    lines: list[BatchRequest] = []
    chunks: list[bytes] = []
    size = 0
    for req in requests:
        data = (json.dumps(req.line(), ensure_ascii=False) + "\n").encode("utf-8")
        if lines and (len(lines) >= max_requests or size + len(data) > max_bytes):
            jobs.append((lines, b"".join(chunks)))
            lines, chunks, size = [], [], 0
        lines.append(req)
        chunks.append(data)
        size += len(data)
    if lines:
        jobs.append((lines, b"".join(chunks)))
    return jobs


def _raise_unexpected(tasks: list[asyncio.Future]) -> None:
    """A step that failed for a reason other than a stop or the budget ends the run at once, as online."""
    for task in tasks:
        if task.done() and not task.cancelled() and task.exception() is not None \
                and not isinstance(task.exception(), RunStopped):
            raise task.exception()


class _Stopped(Exception):
    """The user stopped the run while a job was in progress (the job goes on; resume polls it)."""


def _finish(store: Store, run_id: str, config: RunConfig, result: PassResult, until_round: int | None) -> str:
    until = min(until_round or config.rounds, config.rounds)
    if result.stop_reason == "endpoint":
        store.set_run_status(run_id, "failed", f"Stopped after {MAX_FAILED_STEPS_IN_A_ROW} failed steps in a row; "
                                               f"last error: {result.last_error}. Fix the endpoint, then resume.")
        return "failed"
    status = {"budget": "budget", "stopped": "stopped"}.get(result.stop_reason or "") or (
        "paused" if until < config.rounds else "finished")
    store.set_run_status(run_id, status, None)
    return status


def batch_jsonl(requests: Iterable[BatchRequest]) -> bytes:
    return "".join(json.dumps(r.line(), ensure_ascii=False) + "\n" for r in requests).encode("utf-8")


def _submit(store: Store, run_id: str, pass_no: int, transport: Any, requests: list[BatchRequest],
            data: bytes) -> dict[str, Any]:
    """Upload `data` (the requests' JSONL, from split_jobs), store the job (before it exists, with its file id),
    create it, store its id at once. Both writes are durable (synchronous=FULL): a job whose row a power loss
    rolled back would be submitted and paid again on resume; one whose id was lost is found by its file."""
    file_id = transport.upload(data)
    with store.durable():
        job_id = store.add_batch(run_id, pass_no, transport.engine, [(r.custom_id, r.key) for r in requests],
                                 input_file_id=file_id)
    created = transport.create(file_id)
    with store.durable():
        store.update_batch(job_id, provider_batch_id=created["id"], status=created["status"])
    return next(j for j in store.batches(run_id) if j["id"] == job_id)


def _finish_job(store: Store, run_id: str, job: dict[str, Any], transport: Any, requests: dict[str, BatchRequest],
                price: Price | None, poll: PollPolicy, stop_event: threading.Event, log: Callable[[str], None],
                params_key: str | None = None,
                delivered: dict[str, tuple[dict[str, Any], LLMCall]] | None = None) -> str | None:
    """Poll a job until it is final, then import what it answered (into `delivered` too); its failed or
    missing lines stay for the next. Returns QUEUE_FULL when the provider refused the job because its queue was
    full (its lines are not counted as failed: they go again)."""
    provider_id = job["provider_batch_id"]
    if provider_id is None:  # killed between upload and create: did the create go through?
        found = transport.find_by_input(job["input_file_id"]) if job["input_file_id"] else None
        if found is None:
            store.update_batch(job["id"], imported=1, status="not_created")
            return
        provider_id = found["id"]
        store.update_batch(job["id"], provider_batch_id=provider_id, status=found["status"])
    was_cancelled_at_start = job["status"] in ("cancelling", "cancelled")
    waits = iter(poll.waits())
    errors_in_a_row = 0
    while True:
        try:
            info = transport.retrieve(provider_id)
        except BatchError as e:  # a network blip should not end a job that may run for a day
            errors_in_a_row += 1
            if errors_in_a_row >= MAX_POLL_ERRORS:
                raise
            log(f"polling job {provider_id} failed ({e}); trying again")
            if stop_event.wait(next(waits)):
                raise _Stopped()
            continue
        errors_in_a_row = 0
        counts = info.get("request_counts") or {}
        store.update_batch(job["id"], status=info["status"], n_completed=int(counts.get("completed") or 0),
                           n_failed=int(counts.get("failed") or 0))
        if info["status"] in FINAL_STATES:
            break
        if stop_event.wait(next(waits)):
            raise _Stopped()
    status = info["status"]
    answered: dict[str, Completion] = {}
    failed: dict[str, str] = {}
    for file_key in ("output_file_id", "error_file_id"):
        if info.get(file_key):
            # A line of the provider's file evolab cannot read is named in the log; its request (or, when the line
            # names none, every request the job did not answer) is a failed line, sent again or given up as the
            # fallback says. Nothing unreadable is cached.
            problems: list[str] = []
            a, f = read_results(_download(transport, info[file_key], waits, stop_event, log),
                                f"the results file {info[file_key]} of job {provider_id}", problems)
            for problem in problems:
                log(mask_secrets(problem))
            answered.update(a)
            failed.update(f)
    error = None
    if status == "failed":
        errors = [e for e in ((info.get("errors") or {}).get("data") or []) if isinstance(e, dict)]
        error = "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errors)[:500] or "the batch job failed"
        if any(e.get("code") == QUEUE_FULL for e in errors) and not answered and job["n_requests"] > 1:
            store.update_batch(job["id"], imported=1, error=mask_secrets(error))
            log(f"job {provider_id} refused, the provider's queue is full: {mask_secrets(error)[:200]}")
            return QUEUE_FULL
    store.update_batch(job["id"], output_file_id=info.get("output_file_id"), error_file_id=info.get("error_file_id"),
                       error=error)
    missing = {"failed": f"the batch job failed ({error})", "expired": "the batch job expired before answering it",
               "cancelled": "the batch job was cancelled before answering it"}.get(
        status, "the batch job finished without answering it")
    _learn_param_quirks(store, params_key, failed)
    n_ok, n_bad = import_results(store, run_id, job["id"], requests, answered, failed, price, missing_error=missing,
                                 delivered=delivered)
    log(f"job {provider_id} {status}: {n_ok} answered, {n_bad} to send again")
    if status == "cancelled" and not was_cancelled_at_start:
        raise BatchCancelled(f"The batch job {provider_id} was cancelled; {n_ok} answers kept. Resume to send the "
                             "rest.")
    return None


def _download(transport: Any, file_id: str, waits: Iterable[float], stop_event: threading.Event,
              log: Callable[[str], None]) -> bytes:
    """A result file. A download that failed (after the openai client's own retries: the files API answers 502
    on a bad day) is tried again after a wait, as a status poll is; the job stays unimported until it is read."""
    waits = iter(waits)
    for attempt in range(1, MAX_POLL_ERRORS + 1):
        try:
            return transport.content(file_id)
        except BatchError as e:
            if attempt == MAX_POLL_ERRORS:
                raise
            log(f"downloading {file_id} failed ({e}); trying again")
            if stop_event.wait(next(waits)):
                raise _Stopped()
    raise AssertionError("unreachable")


def _learn_param_quirks(store: Store, params_key: str | None, failed: dict[str, str]) -> None:
    """A line refused for a reasoning model's parameters ("Use 'max_completion_tokens' instead") teaches the
    quirk, as an online 400 does: the store remembers it for the endpoint and model, and the next pass's client
    loads it, so the resubmitted lines carry the right parameters."""

    learned = set().union(*(quirks_from_error(e) for e in failed.values())) if failed else set()
    if not learned or not params_key:
        return
    known = set(json.loads(store.get_meta(params_key) or "{}").get("quirks") or [])
    store.set_meta(params_key, json.dumps({"quirks": sorted(known | learned), "seen": "a batch line's error",
                                           "learned_at": time.time()}))


# -- cancel, export, import -------------------------------------------------------------------------------
def cancel_run_batches(store: Store, run_id: str, transport: Any = None) -> list[str]:
    """Cancel the run's jobs still in progress; the process polling them stops the run when they are cancelled.
    Returns the cancelled provider ids."""
    run = store.get_run(run_id)
    if run is None:
        raise KeyError(f"No run {run_id!r} in {store.path}.")
    open_jobs = [j for j in store.batches(run_id, open_only=True)
                 if j["engine"] == "openai" and j["provider_batch_id"] and j["status"] not in FINAL_STATES]
    if not open_jobs:
        return []
    transport = transport or OpenAIBatches(run["config"])
    done = []
    for job in open_jobs:
        info = transport.cancel(job["provider_batch_id"])
        store.update_batch(job["id"], status=info.get("status") or "cancelling")
        done.append(job["provider_batch_id"])
    return done


@leased
def export_requests(store: Store, run_id: str, out: str | Path, *, backend: Backend | None = None,
                    until_round: int | None = None) -> int:
    """Write the pending stage's requests as batch JSONL (for vLLM run-batch or any compatible service);
    returns how many (0: the run needs nothing more)."""
    config: RunConfig = _run_config(store, run_id)
    _check_endpoint_named(config)
    result = asyncio.run(run_pass(store, run_id, backend, until_round=until_round))
    if not result.requests:
        _finish(store, run_id, config, result, until_round)
        return 0
    Path(out).write_bytes(batch_jsonl(result.requests))
    for job in store.batches(run_id, open_only=True):
        if job["engine"] == "file":  # an earlier export not imported: this one replaces it
            store.update_batch(job["id"], imported=1, status="superseded")
    store.add_batch(run_id, 0, "file", [(r.custom_id, r.key) for r in result.requests], input_file_id=str(out),
                    status="exported")
    store.set_run_status(run_id, "paused", f"waiting for the results of {len(result.requests)} batch requests "
                                           f"written to {out}")
    return len(result.requests)


@leased
def import_results_file(store: Store, run_id: str, results: str | Path, *, backend: Backend | None = None,
                        until_round: int | None = None) -> dict[str, Any]:
    """Read an output file (OpenAI's or vLLM run-batch's format) for the run's pending requests, then go on as far
    as the answers allow. Returns {answered, failed, unknown, pending, status}."""
    config: RunConfig = _run_config(store, run_id)
    _check_endpoint_named(config)
    answered, failed = read_results(read_results_file(results), str(results))  # every line checked first
    result = asyncio.run(run_pass(store, run_id, backend, until_round=until_round))
    requests = {r.key: r for r in result.requests}
    ids = {r.custom_id for r in result.requests}
    unknown = [cid for cid in list(answered) + list(failed) if cid not in ids]
    answered = {k: v for k, v in answered.items() if k in ids}
    failed = {k: v for k, v in failed.items() if k in ids}
    open_files = [j for j in store.batches(run_id, open_only=True) if j["engine"] == "file"]
    job_id = open_files[-1]["id"] if open_files else store.add_batch(
        run_id, 0, "file", [(r.custom_id, r.key) for r in result.requests], status="exported")
    price = resolve_batch_price(config.model, price=config.price, prices_file=config.prices_file)
    import_results(store, run_id, job_id, requests, answered, failed, price)
    store.update_batch(job_id, status="completed", n_completed=len(answered), n_failed=len(failed),
                       input_file_id=str(results))
    after = asyncio.run(run_pass(store, run_id, backend, until_round=until_round))
    status = "paused"
    if not after.requests:
        status = _finish(store, run_id, config, after, until_round)
    else:
        store.set_run_status(run_id, "paused", f"{len(after.requests)} batch requests pending: batch export them")
    return {"answered": len(answered), "failed": len(failed), "unknown": len(unknown),
            "pending": len(after.requests), "status": status}


def read_results_file(results: str | Path) -> bytes:
    """A results file's bytes: a regular file (a folder, a device such as /dev/zero or a pipe is refused, not
    read until memory runs out), or ResultsFileError naming it."""
    path = Path(results)
    try:
        if not path.exists():
            raise ResultsFileError(f"Cannot read the results file {results}: no such file.")
        if not path.is_file():
            raise ResultsFileError(f"Cannot read the results file {results}: not a regular file.")
        return path.read_bytes()
    except OSError as e:
        raise ResultsFileError(f"Cannot read the results file {results}: {e.strerror or e}.") from None


def _run_config(store: Store, run_id: str) -> RunConfig:
    run = store.get_run(run_id)
    if run is None:
        raise KeyError(f"No run {run_id!r} in {store.path}.")
    return run["config"]


def _check_endpoint_named(config: RunConfig) -> None:
    """The cache keys name the server: a batch file is for the run's --base-url and --model."""
    if not config.base_url:
        raise BatchError("Batch export needs the run's --base-url and --model: they name the server that will "
                         "answer (for vLLM's run-batch on a GPU machine, the URL you would serve it at).")


def batch_summary(store: Store, run_id: str) -> dict[str, Any]:
    """What the Runs page and the CLI show: the run's jobs and how many calls batches answered."""
    jobs = store.batches(run_id)
    return {"jobs": jobs, "open": [j for j in jobs if not j["imported"]], "batch_calls": store.batch_call_count(run_id)}


def jobs_per_round(config: RunConfig) -> int:
    """Batch jobs one round takes when every call is answered: one per call in a kept step's chain, each
    waiting for the one before: evolve, respond (the cheap checks run locally between), the equality judge,
    the scores (every LLM scorer's call goes in the same job)."""
    judge = any(isinstance(r, eliminator.EqualityJudge) and r.enabled(config) for r in eliminator.CASCADE)
    return 2 + int(judge) + int(any(s.uses_llm for s in chosen_scorers(config)))
