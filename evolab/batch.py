"""A round as batch jobs: the OpenAI Batch API, vLLM's run-batch, or any service that reads the same JSONL.

Not a second engine. A *pass* runs the ordinary Engine with a client that answers from the request cache and,
for the first call of a step that is not cached, records the request (custom_id, method, url, body) instead of
sending it; the step stops there and writes nothing. The pass's requests go out as one job; its results go
into the cache (and the calls table, flagged batch, at the batch price); the next pass runs the same engine
code again and finds them. So a batch run and an online run with the same random seed make the same nodes,
calls, scores and verdicts by construction: node ids and operation choices come from (run, parent, round,
slot, seed), never from timing. Stages follow in order (evolve, cheap checks, respond, checks, equality
judge, scores) because a step's next call only exists once its previous one is answered.

Jobs are stored the moment they are created: a killed process re-runs the pass (the cache has not changed,
so the same requests come out) and polls the job it had submitted instead of submitting it again.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import random
import threading
import time
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from . import eliminator
from .llm.base import Backend, BudgetExceeded, Completion, LLMError, Messages, mask_secrets
from .llm.client import LLMClient, make_backend, params_meta_key
from .llm.pricing import Price, resolve_batch_price
from .pipeline import Engine, RunStopped, expected_steps
from .schema import LLMCall, Node, RunConfig
from .store import Store

BATCH_URL = "/v1/chat/completions"
FINAL_STATES = ("completed", "failed", "expired", "cancelled")
from .batch_cli import DEFAULT_MAX_ATTEMPTS, FALLBACKS  # noqa: E402 (kept light for the CLI's parser)
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
    from .llm.openai_backend import sampling_params

    quirks = set(getattr(backend, "param_quirks", None) or ())
    body: dict[str, Any] = {"model": backend.model, "messages": messages,
                            **sampling_params(quirks, temperature, max_tokens)}
    if response_format:
        body["response_format"] = response_format
    return body


# -- one pass ---------------------------------------------------------------------------------------------
class CollectingClient(LLMClient):
    """The run's client for one pass: cache hits as usual; a miss becomes a batch request (NotAnswered), or an
    LLMError when the batch gave up on it, or an online call when it falls back to online."""

    def __init__(self, backend: Backend, store: Store, *, given_up: dict[str, str], online_keys: set[str],
                 recorded: set[tuple[str, str | None]], online_price: Price | None,
                 answers: dict[str | None, dict[str, dict[str, Any]]] | None = None, **kwargs: Any):
        super().__init__(backend, store, **kwargs)
        self.requests: dict[str, BatchRequest] = {}
        self.given_up, self.online_keys, self.recorded = given_up, online_keys, recorded
        self.online_price = online_price
        # Cached answers already read (node id -> request cache key -> cache row), for every pass of the run: a
        # step replays its answered calls in each pass, and a cache row never changes once written. BatchEngine
        # drops a node's answers once its step is stored.
        self.answers = {} if answers is None else answers
        self.errors_raised = 0  # failed calls: a verdict computed while one failed is not kept (it may not recur)

    def _cache_lookup(self, key: str, node_id: str | None = None) -> dict[str, Any] | None:
        hit = self.answers.get(node_id, {}).get(key)
        if hit is None:
            hit = super()._cache_lookup(key, node_id)
            if hit is not None:
                self.answers.setdefault(node_id, {})[key] = hit
        return hit

    async def _send(self, messages: Messages, *, key: str, node_id: str | None, **kw: Any) -> Completion:
        if key in self.online_keys:
            try:
                return await super()._send(messages, key=key, node_id=node_id, **kw)
            except LLMError:
                self.errors_raised += 1
                raise
        if key in self.given_up:
            self.errors_raised += 1
            error = LLMError(f"The batch jobs did not answer this request: {self.given_up[key]}")
            self._record(kw.get("purpose", ""), node_id, Completion(text="", model=self.model, request_hash=key),
                         str(error))
            raise error
        if key not in self.requests:
            self.requests[key] = BatchRequest(key, kw.get("purpose", ""), node_id, request_body(
                self.backend, messages, temperature=kw["temperature"], max_tokens=kw["max_tokens"],
                response_format=kw.get("response_format")))
            # The budget holds the worst case of every request in the job until it is answered.
            usd, tokens, _ = self._reservation(messages, kw["max_tokens"])
            self._reserved_usd += usd
            self._reserved_tokens += tokens
        raise NotAnswered(key)

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
        # A step re-runs its answered calls in every pass until it is done: store each (request, node) once
        # (a batch answer's call row was written when the job was imported).
        mark = (comp.request_hash or "", node_id)
        if comp.request_hash and mark in self.recorded:
            return
        self.recorded.add(mark)
        super()._record(purpose, node_id, comp, error)


# The cascade's rules that read only the step's own texts (no model, no pool, no scores): a step replayed in
# the next pass gets their verdicts back instead of computing them again.
LOCAL_RULES = (eliminator.Truncated, eliminator.Unchanged, eliminator.PromptLeak, eliminator.Refusal,
               eliminator.EmptyResponse)
# Rules that also ask the model, about the same texts only: their answer is a cache row (content-keyed), so a
# verdict reached without a failed call is the same in the next pass.
ANSWERED_RULES = (eliminator.EqualityJudge,)


class BatchEngine(Engine):
    """The Engine, told that a step waiting for the batch is not finished: the novelty check of round r (which
    compares with every lineage's round r - 1) waits for the next pass when any step of round r - 1 waits.
    `local_verdicts` (node id -> rule id, "evolve" or "complexity" -> (inputs, result)) lives across the passes
    of a run: a step replayed in the next pass gets back what it computed from the same inputs."""

    def __init__(self, *args: Any, local_verdicts: dict[str, dict[str, tuple]] | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.waiting_rounds: set[int] = set()
        self.local_verdicts = {} if local_verdicts is None else local_verdicts

    async def evolve_child(self, parent: Node, round_: int, *args: Any, **kwargs: Any):
        try:
            result = await super().evolve_child(parent, round_, *args, **kwargs)
        except NotAnswered:
            self.waiting_rounds.add(round_)
            raise
        # The step is stored: its verdicts and answers are not needed again.
        self.local_verdicts.pop(result.node.id, None)
        getattr(self.client, "answers", {}).pop(result.node.id, None)
        return result

    async def finish_seed(self, seed: Node) -> None:
        await super().finish_seed(seed)
        getattr(self.client, "answers", {}).pop(seed.id, None)

    async def _check_rule(self, rule: eliminator.Rule, ctx: eliminator.StepContext) -> eliminator.Verdict:
        if not isinstance(rule, LOCAL_RULES + ANSWERED_RULES):
            return await super()._check_rule(rule, ctx)
        node, parent = ctx.node, ctx.parent
        texts = (parent.instruction, parent.input, node.instruction, node.input, node.response, node.language,
                 ctx.finish_reason)
        known = self.local_verdicts.setdefault(node.id, {}).get(rule.id + type(rule).__name__)
        if known is not None and known[0] == texts:
            return known[1]
        errors_before = getattr(self.client, "errors_raised", 0)
        verdict = await super()._check_rule(rule, ctx)
        if getattr(self.client, "errors_raised", 0) == errors_before:
            self.local_verdicts.setdefault(node.id, {})[rule.id + type(rule).__name__] = (texts, verdict)
        return verdict

    async def _evolve(self, *args: Any, **kwargs: Any):
        # The evolver's prompt depends on the rng's state; its reply is a cache row (content-keyed): the same
        # arguments and rng state give the same Evolution, and the rng is left as the call would leave it.
        rng: random.Random | None = kwargs.get("rng")
        inputs = (args, tuple((k, v) for k, v in kwargs.items() if k != "rng"), _rng_state(rng, digest=True))
        node_id = kwargs.get("node_id") or ""
        known = self.local_verdicts.get(node_id, {}).get("evolve")
        if known is not None and known[0] == inputs:
            evolution, rng_after = known[1]
            if rng is not None:
                rng.setstate(_unpack_rng_state(rng_after))
            return evolution
        evolution = await super()._evolve(*args, **kwargs)
        self.local_verdicts.setdefault(node_id, {})["evolve"] = (inputs, (evolution, _rng_state(rng)))
        return evolution

    def _complexity_scores(self, node: Node) -> list:
        inputs = (node.id, node.instruction, node.input, node.language)
        known = self.local_verdicts.get(node.id, {}).get("complexity")
        if known is not None and known[0] == inputs:
            return list(known[1])
        scores = super()._complexity_scores(node)
        self.local_verdicts.setdefault(node.id, {})["complexity"] = (inputs, list(scores))
        return scores

    async def novelty_pool(self, node: Node) -> list[str]:
        await self._round_finished(node.round - 1)
        if any(r < node.round for r in self.waiting_rounds):
            raise NotAnswered("novelty pool")
        return await super().novelty_pool(node)


def _rng_state(rng: random.Random | None, digest: bool = False) -> tuple | None:
    """A Random's state, compact (its 625 words as 2.5 kB of bytes, or their SHA-256 to compare with): the
    state as a tuple of ints would take ~20 kB for every step waiting between passes."""
    if rng is None:
        return None
    version, words, gauss = rng.getstate()
    packed = array("I", words).tobytes()
    return (version, hashlib.sha256(packed).digest() if digest else packed, gauss)


def _unpack_rng_state(state: tuple) -> tuple:
    version, packed, gauss = state
    return (version, tuple(array("I", packed)), gauss)


@dataclass
class PassResult:
    requests: list[BatchRequest]
    stop_reason: str | None = None
    failed_in_a_row: int = 0
    last_error: str | None = None
    counts: dict[str, int] = field(default_factory=dict)


async def run_pass(store: Store, run_id: str, backend: Backend | None = None, *, until_round: int | None = None,
                   fallback_online: bool = False, max_attempts: int = DEFAULT_MAX_ATTEMPTS,
                   stop_event: threading.Event | None = None, progress: Callable | None = None,
                   local_verdicts: dict[str, dict[str, tuple]] | None = None,
                   answers: dict[str | None, dict[str, dict[str, Any]]] | None = None) -> PassResult:
    """Run the engine over the whole run as far as the cache goes; the requests the next job must answer.
    `local_verdicts` and `answers`: the same dicts for every pass of a run (see BatchEngine, CollectingClient)."""
    run = store.get_run(run_id)
    config: RunConfig = run["config"]
    # A backend of this pass's event loop (its connection pool cannot outlive the loop), unless one is given.
    own_backend = backend is None
    backend = backend or make_backend(config)
    failures = store.batch_line_failures(run_id)
    online = {k for k, (n, _) in failures.items() if fallback_online}
    given_up = {k: error for k, (n, error) in failures.items() if not fallback_online and n >= max_attempts}
    client = CollectingClient(
        backend, store, run_id=run_id, concurrency=config.concurrency, budget_usd=config.budget_usd,
        structured=config.structured, budget_tokens=config.budget_tokens, price=config.price,
        prices_file=config.prices_file, rpm=config.rpm, tpm=config.tpm, stop_event=stop_event,
        given_up=given_up, online_keys=online, recorded=store.call_keys(run_id), online_price=None, answers=answers)
    client.online_price = client.price
    client.price = resolve_batch_price(backend.model, price=config.price, prices_file=config.prices_file)
    engine = BatchEngine(store, run_id, client, config, progress=progress, stop_event=stop_event,
                         local_verdicts=local_verdicts)
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
        import openai

        from .llm.openai_backend import resolve_api_key

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
def read_results(text: str) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """An output or error file (OpenAI's format, also vLLM run-batch's): ({custom_id: chat body} answered,
    {custom_id: error} failed). A line that is not JSON is an error of the whole file."""
    answered: dict[str, dict[str, Any]] = {}
    failed: dict[str, str] = {}
    for n, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        try:
            line = json.loads(raw)
            custom_id = line["custom_id"]
        except (ValueError, KeyError, TypeError):
            raise BatchError(f"Line {n} of the results is not a batch result (JSON with custom_id): "
                             f"{raw[:120]!r}") from None
        response = line.get("response") or {}
        body = response.get("body") if isinstance(response, dict) else None
        status = response.get("status_code") if isinstance(response, dict) else None
        if line.get("error"):
            err = line["error"]
            failed[custom_id] = f"{err.get('code')}: {err.get('message')}" if isinstance(err, dict) else str(err)
        elif status == 200 and isinstance(body, dict) and body.get("choices"):
            answered[custom_id] = body
        else:
            err = body.get("error") if isinstance(body, dict) else None
            message = err.get("message") if isinstance(err, dict) else json.dumps(body)[:200]
            failed[custom_id] = f"HTTP {status}: {message}"
    return answered, failed


def completion_from_body(body: dict[str, Any], model: str) -> Completion:
    """The Completion the online backend reads from the same chat body (text, usage, finish reason)."""
    from .llm.openai_backend import _count, _reasoning_tokens

    choice = body["choices"][0]
    usage = body.get("usage")
    return Completion(text=(choice.get("message") or {}).get("content") or "", model=body.get("model") or model,
                      prompt_tokens=_count(usage, "prompt_tokens"), completion_tokens=_count(usage, "completion_tokens"),
                      finish_reason=choice.get("finish_reason"), reasoning_tokens=_reasoning_tokens(usage))


def import_results(store: Store, run_id: str, batch_id: int, requests: dict[str, BatchRequest],
                   answered: dict[str, dict[str, Any]], failed: dict[str, str], price: Price | None,
                   *, missing_error: str | None = None) -> tuple[int, int]:
    """Write a job's results as online calls are written (cache row, call row flagged batch, at the batch
    price); failed lines (and, with `missing_error`, lines the job never answered) are kept for resubmission.
    Returns (answered, failed) counts."""
    lines = store.batch_line_hashes(batch_id)
    rows, bad = [], []
    for custom_id, body in answered.items():
        key = lines.get(custom_id) or custom_id.split(":", 1)[-1]
        req = requests.get(key)
        try:
            comp = completion_from_body(body, req.body["model"] if req else "")
        except (KeyError, IndexError, TypeError, AttributeError) as e:
            bad.append((custom_id, f"unreadable result: {e}"))
            continue
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
    return len(rows), len(bad)


# -- the loop ---------------------------------------------------------------------------------------------
@dataclass
class BatchOptions:
    poll: PollPolicy = field(default_factory=PollPolicy)
    fallback: str = "resubmit"  # failed lines: "resubmit" (up to max_attempts jobs), or "online" at once
    max_attempts: int = DEFAULT_MAX_ATTEMPTS

    def __post_init__(self) -> None:
        if self.fallback not in FALLBACKS:
            raise ValueError(f"fallback must be one of {FALLBACKS}, not {self.fallback!r}")
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")


def run_batched(store: Store, run_id: str, *, backend: Backend | None = None, transport: Any = None,
                options: BatchOptions | None = None, until_round: int | None = None,
                stop_event: threading.Event | None = None, progress: Callable | None = None,
                log: Callable[[str], None] | None = None) -> str:
    """Run (or resume) a stored run as batch jobs, one per pass, until a pass needs nothing more. Returns the
    final status, as `pipeline.run_sync` does."""
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
        # One event loop and one backend for every pass (the backend only calls for the structured-output
        # probe and online fallbacks); polling blocks the loop between passes, where nothing else runs.
        pass_backend = backend or make_backend(config)
        params_key = params_meta_key(getattr(pass_backend, "endpoint", "") or "", pass_backend.model)
        local_verdicts: dict[str, dict[str, tuple]] = {}
        answers: dict[str | None, dict[str, dict[str, Any]]] = {}
        try:
            pass_no = 0
            while True:
                if stop_event.is_set():
                    raise _Stopped()
                pass_no += 1
                result = await run_pass(store, run_id, pass_backend, until_round=until_round,
                                        fallback_online=options.fallback == "online",
                                        max_attempts=options.max_attempts, stop_event=stop_event, progress=progress,
                                        local_verdicts=local_verdicts, answers=answers)
                requests = {r.key: r for r in result.requests}
                if not requests:
                    return _finish(store, run_id, config, result, until_round)
                for job in store.batches(run_id, open_only=True):  # submitted before (here or by a killed process)
                    if job["engine"] != transport.engine:
                        store.update_batch(job["id"], imported=1, status="superseded")
                        continue
                    log(f"polling job {job['provider_batch_id'] or job['id']} submitted earlier")
                    _finish_job(store, run_id, job, transport, requests, price, options.poll, stop_event, log,
                                params_key)
                    break
                else:
                    log(f"pass {pass_no}: {len(requests)} requests -> a new batch job")
                    job = _submit(store, run_id, pass_no, transport, list(requests.values()))
                    _finish_job(store, run_id, job, transport, requests, price, options.poll, stop_event, log,
                                params_key)
        finally:
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


class _Stopped(Exception):
    """The user stopped the run while a job was in progress (the job goes on; resume polls it)."""


def _finish(store: Store, run_id: str, config: RunConfig, result: PassResult, until_round: int | None) -> str:
    from .pipeline import MAX_FAILED_STEPS_IN_A_ROW

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


def _submit(store: Store, run_id: str, pass_no: int, transport: Any, requests: list[BatchRequest]) -> dict[str, Any]:
    """Upload, store the job (before it exists, with its file id), create it, store its id at once."""
    file_id = transport.upload(batch_jsonl(requests))
    job_id = store.add_batch(run_id, pass_no, transport.engine, [(r.custom_id, r.key) for r in requests],
                             input_file_id=file_id)
    created = transport.create(file_id)
    store.update_batch(job_id, provider_batch_id=created["id"], status=created["status"])
    return next(j for j in store.batches(run_id) if j["id"] == job_id)


def _finish_job(store: Store, run_id: str, job: dict[str, Any], transport: Any, requests: dict[str, BatchRequest],
                price: Price | None, poll: PollPolicy, stop_event: threading.Event, log: Callable[[str], None],
                params_key: str | None = None) -> None:
    """Poll a job until it is final, then import what it answered; its failed or missing lines stay for the next."""
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
    answered: dict[str, dict[str, Any]] = {}
    failed: dict[str, str] = {}
    for file_key in ("output_file_id", "error_file_id"):
        if info.get(file_key):
            a, f = read_results(transport.content(info[file_key]).decode("utf-8"))
            answered.update(a)
            failed.update(f)
    error = None
    if status == "failed":
        errors = ((info.get("errors") or {}).get("data") or [])
        error = "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errors)[:500] or "the batch job failed"
    store.update_batch(job["id"], output_file_id=info.get("output_file_id"), error_file_id=info.get("error_file_id"),
                       error=error)
    missing = {"failed": f"the batch job failed ({error})", "expired": "the batch job expired before answering it",
               "cancelled": "the batch job was cancelled before answering it"}.get(
        status, "the batch job finished without answering it")
    _learn_param_quirks(store, params_key, failed)
    n_ok, n_bad = import_results(store, run_id, job["id"], requests, answered, failed, price, missing_error=missing)
    log(f"job {provider_id} {status}: {n_ok} answered, {n_bad} to send again")
    if status == "cancelled" and not was_cancelled_at_start:
        raise BatchCancelled(f"The batch job {provider_id} was cancelled; {n_ok} answers kept. Resume to send the "
                             "rest.")


def _learn_param_quirks(store: Store, params_key: str | None, failed: dict[str, str]) -> None:
    """A line refused for a reasoning model's parameters ("Use 'max_completion_tokens' instead") teaches the
    quirk, as an online 400 does: the store remembers it for the endpoint and model, and the next pass's client
    loads it, so the resubmitted lines carry the right parameters."""
    from .llm.openai_backend import quirks_from_error

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


def import_results_file(store: Store, run_id: str, results: str | Path, *, backend: Backend | None = None,
                        until_round: int | None = None) -> dict[str, Any]:
    """Read an output file (OpenAI's or vLLM run-batch's format) for the run's pending requests, then go on as far
    as the answers allow. Returns {answered, failed, unknown, pending, status}."""
    config: RunConfig = _run_config(store, run_id)
    _check_endpoint_named(config)
    try:
        text = Path(results).read_text(encoding="utf-8")
    except OSError as e:
        raise BatchError(f"Cannot read the results file {results}: {e.strerror or e}.") from None
    answered, failed = read_results(text)
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
    the scores (difficulty and quality go in the same job)."""
    judge = any(isinstance(r, eliminator.EqualityJudge) and r.enabled(config) for r in eliminator.CASCADE)
    return 2 + int(judge) + int(config.score_difficulty or config.score_quality)
