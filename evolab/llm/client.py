"""The client every part of evolab calls: a backend plus the request cache, one concurrency limit,
usage and cost accounting, a budget guard, and a stored row for every call."""
from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import threading
import time
from typing import Any

from evolab.llm.base import (
    BACKENDS,
    STRUCTURED_MODES,
    Backend,
    BudgetExceeded,
    Completion,
    LLMError,
    Messages,
    mask_secrets,
    response_format,
)
from evolab.llm.local import LOCAL_MODEL_ALIAS, local_server
from evolab.llm.pricing import Price, count_message_tokens, resolve_price
from evolab.llm.ratelimit import RateLimited, RateLimiter, estimate_prompt_tokens
from evolab.schema import LLMCall, RunConfig
from evolab.store import Store

# A 429/503 asking for a longer pause than this fails the call (a daily quota, not a busy minute).
MAX_RETRY_AFTER_S = 300.0


def request_key(model: str, messages: Messages, temperature: float, max_tokens: int, salt: str = "", *,
                endpoint: str = "", response_format: dict[str, Any] | None = None) -> str:
    """Cache key: the whole request and the server it goes to (the same model name on two servers is two
    models). `salt` tells apart deliberate repeats (the same parent evolved again in a later round must
    not get the cached failure back)."""
    request: dict[str, Any] = {"model": model, "messages": messages, "temperature": temperature,
                               "max_tokens": max_tokens, "salt": salt, "endpoint": endpoint}
    if response_format:
        request["response_format"] = response_format
    payload = json.dumps(request, ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


STRUCTURED_SETTINGS = ("auto", "on", "off")


def structured_meta_key(endpoint: str, model: str) -> str:
    return f"structured|{endpoint}|{model}"


def params_meta_key(endpoint: str, model: str) -> str:
    """Where the store remembers a model's parameter quirks (reasoning models) learned from its endpoint."""
    return f"params|{endpoint}|{model}"


class PriceUnknown(ValueError):
    """A dollar budget for a model without a known price: it could not hold, so the run does not start."""


def budget_price_problem(model: str, budget_usd: float | None, price: Price | None) -> str | None:
    """Why a dollar budget cannot hold for `model` (no price known), with what to do; None when it can."""
    if budget_usd is None or price is not None:
        return None
    return (f"No price is known for model {model!r}, so a budget in USD cannot stop the run in time. Give its "
            "price with --price IN,OUT (the Runs page's price field; USD per million input and output tokens, e.g. "
            "0.5,1.5), add it to a --prices FILE or EVOLAB_PRICES, or budget in tokens instead with --budget-tokens "
            "N (the Runs page's token budget).")


def make_backend(config: RunConfig) -> Backend:
    """The backend a run config names. No base URL means the embedded local model (started on demand)."""

    base_url = config.base_url
    if not base_url:
        base_url = local_server().ensure()
        # Its port changes from start to start; the cache and the probe know it as "embedded".
        return BACKENDS["openai"](model=LOCAL_MODEL_ALIAS, base_url=base_url, api_key_env=None,
                                  timeout_s=config.timeout_s, max_retries=config.max_retries, endpoint="embedded",
                                  concurrency=config.concurrency)
    return BACKENDS["openai"](model=config.model, base_url=base_url, api_key_env=config.api_key_env,
                              timeout_s=config.timeout_s, max_retries=config.max_retries,
                              restrict_key_names=getattr(config, "restrict_key_env", False),
                              concurrency=config.concurrency)


# A cache row's fields and the types a reply's fields must have.
_CACHED_FIELDS: dict[str, tuple[type, ...]] = {
    "text": (str,), "model": (str,), "prompt_tokens": (int,), "completion_tokens": (int,),
    "latency_s": (int, float), "finish_reason": (str, type(None)), "reasoning_tokens": (int,)}


def cached_completion(hit: Any, key: str) -> Completion | None:
    """A cache row as the Completion it stores; None when it is not one (an older evolab cached a batch reply
    whose content was a number or a list): then the request is a miss, asked again, and its answer replaces it."""
    if not isinstance(hit, dict) or not isinstance(hit.get("text"), str) or not isinstance(hit.get("model"), str):
        return None
    fields = {}
    for name, kinds in _CACHED_FIELDS.items():
        if name in hit:
            value = hit[name]
            if not isinstance(value, kinds) or isinstance(value, bool) or (
                    isinstance(value, (int, float)) and value < 0):
                return None
            fields[name] = value
    return Completion(**fields, cached=True, request_hash=key)


class LLMClient:
    def __init__(self, backend: Backend, store: Store | None = None, *, run_id: str | None = None,
                 concurrency: int = 8, budget_usd: float | None = None, use_cache: bool = True,
                 structured: str = "auto", budget_tokens: int | None = None, price: Any = None,
                 prices_file: str | None = None, rpm: int | None = None, tpm: int | None = None,
                 adaptive: bool = True, stop_event: Any = None):
        """`concurrency` is the most calls in flight; the rate limiter (ratelimit.py) lowers it on 429/503 and
        paces calls by the endpoint's rate-limit headers and the `rpm`/`tpm` caps. `adaptive=False` keeps the
        old fixed concurrency (for comparison). A set `stop_event` fails the calls still waiting for it."""
        if structured not in STRUCTURED_SETTINGS:
            raise ValueError(f"structured must be one of {STRUCTURED_SETTINGS}, not {structured!r}")
        self.backend = backend
        self.structured = structured
        self._structured_mode: str | None = None
        self._structured_lock: asyncio.Lock | None = None
        self.store = store
        self.run_id = run_id
        self.concurrency = max(1, int(concurrency))
        self.limiter = RateLimiter(self.concurrency, rpm=rpm, tpm=tpm, adaptive=adaptive, stop_event=stop_event)
        if hasattr(backend, "rate_limiter"):  # the OpenAI backend shows it every reply's headers
            backend.rate_limiter = self.limiter
        self.budget_usd = budget_usd
        self.budget_tokens = budget_tokens
        # The price every call is billed at (None: unknown, priced $0 and labelled so); a dollar budget needs one.
        self.price: Price | None = resolve_price(backend.model, price=price, prices_file=prices_file)
        problem = budget_price_problem(backend.model, budget_usd, self.price)
        if problem:
            raise PriceUnknown(problem)
        self.use_cache = use_cache and store is not None
        self.spent_usd = store.run_cost(run_id) if (store is not None and run_id) else 0.0
        self.spent_tokens = store.run_tokens(run_id) if (store is not None and run_id) else 0
        self._reserved_usd = 0.0
        self._reserved_tokens = 0
        # Reservations count the prompt with tiktoken; the endpoint's tokenizer may count more. Reserve with a
        # margin: 25% until a reply says how far off the count is, then the worst ratio seen plus 5% (>= 10%).
        self._prompt_margin = 1.25
        self._worst_prompt_ratio = 0.0
        self.calls_made = 0  # requests that reached the backend (not cached)
        self._load_param_quirks()

    @property
    def model(self) -> str:
        return self.backend.model

    @property
    def endpoint(self) -> str:
        return getattr(self.backend, "endpoint", "") or ""

    async def structured_mode(self) -> str:
        """How to ask this (endpoint, model) for JSON: one of STRUCTURED_MODES. Probed once and
        remembered in the store; "off" never asks; "on" fails loudly when the endpoint cannot."""
        if self.structured == "off":
            return "none"
        if self._structured_mode is not None:
            return self._structured_mode
        if self._structured_lock is None:
            self._structured_lock = asyncio.Lock()
        async with self._structured_lock:
            if self._structured_mode is None:
                mode = await self._find_structured_mode()
                if self.structured == "on" and mode == "none":
                    raise LLMError(
                        f"--structured on, but {self.endpoint or 'the endpoint'} does not honour a JSON schema for "
                        f"model {self.model!r} (neither OpenAI's json_schema nor json_object with a schema). "
                        "Use --structured auto to fall back to reading free text.")
                self._structured_mode = mode
        return self._structured_mode

    # -- parameter quirks (reasoning models) ------------------------------------------------------------
    def _load_param_quirks(self) -> None:
        """Give the backend what the store remembers about this (endpoint, model)'s parameters, and have it
        tell us what it learns from a 400 so later runs send the right ones at once."""
        if getattr(self.backend, "param_quirks", None) is None:
            return
        if self.store is not None:
            known = self.store.get_meta(params_meta_key(self.endpoint, self.model))
            if known:
                self.backend.param_quirks |= set(json.loads(known).get("quirks") or [])
        self.backend.on_param_quirks = self._remember_param_quirks

    def _remember_param_quirks(self, quirks: set[str], seen: str) -> None:
        if self.store is not None:
            self.store.set_meta(params_meta_key(self.endpoint, self.model), json.dumps(
                {"quirks": sorted(quirks), "seen": mask_secrets(seen), "learned_at": time.time()}))

    async def _find_structured_mode(self) -> str:
        key = structured_meta_key(self.endpoint, self.model)
        if self.store is not None:
            known = self.store.get_meta(key)
            if known:
                mode = json.loads(known).get("mode")
                if mode in STRUCTURED_MODES:
                    return mode
        probe = getattr(self.backend, "probe_structured", None)
        if probe is None:  # scripted backends say what they support
            return getattr(self.backend, "structured_mode", "none")
        if self._over_budget(0.0 if self.price is None else self.price.cost(2 * 64, 2 * 1024), 2 * (64 + 1024)):
            return "none"  # the probe (two short calls) could overspend: read free text, ask another time
        mode, comp, seen = await probe()
        if comp is not None:
            self.calls_made += 1
            self._account(comp)
            self._record("probe", None, comp, None)
        if mode is None:  # could not ask now: free text for this client, ask again next time
            return "none"
        if self.store is not None:
            self.store.set_meta(key, json.dumps({"mode": mode, "seen": seen, "checked_at": time.time()}))
        return mode

    async def response_format(self, name: str, schema: dict[str, Any]) -> dict[str, Any] | None:
        """The response_format for `schema` on this endpoint, or None (then read the free text)."""
        return response_format(await self.structured_mode(), name, schema)

    # -- the budget -------------------------------------------------------------------------------------
    def _reservation(self, messages: Messages, max_tokens: int) -> tuple[float, int, int]:
        """(USD, tokens, the counted prompt tokens) a call could spend at most: its prompt (with the margin)
        plus max_tokens (reasoning tokens count against the same cap)."""
        if self.budget_usd is None and self.budget_tokens is None:
            return 0.0, 0, 0
        counted = count_message_tokens(messages, self.model)
        prompt = math.ceil(counted * self._prompt_margin)
        usd = self.price.cost(prompt, max_tokens) if (self.budget_usd is not None and self.price) else 0.0
        return usd, prompt + max_tokens, counted

    def _over_budget(self, usd: float, tokens: int) -> str | None:
        """What budget starting a call reserving (usd, tokens) would exceed, or None."""
        if self.budget_usd is not None and self.spent_usd + self._reserved_usd + usd > self.budget_usd:
            return (f"Budget ${self.budget_usd:.4f} reached (spent ${self.spent_usd:.4f}); raise --budget-usd "
                    "to go on.")
        if self.budget_tokens is not None and self.spent_tokens + self._reserved_tokens + tokens > self.budget_tokens:
            return (f"Token budget {self.budget_tokens:,} reached (spent {self.spent_tokens:,}); raise "
                    "--budget-tokens to go on.")
        return None

    def _account(self, comp: Completion, counted_prompt: int = 0) -> None:
        """Price a completion that reached the endpoint and add it to what was spent."""
        comp.price_known = self.price is not None
        comp.cost_usd = self.price.cost(comp.prompt_tokens, comp.completion_tokens) if self.price else 0.0
        self.spent_usd += comp.cost_usd
        self.spent_tokens += comp.prompt_tokens + comp.completion_tokens
        if counted_prompt and comp.prompt_tokens:
            self._worst_prompt_ratio = max(self._worst_prompt_ratio, comp.prompt_tokens / counted_prompt)
            self._prompt_margin = max(1.1, self._worst_prompt_ratio * 1.05)

    async def complete(self, messages: Messages, *, purpose: str, temperature: float = 0.0,
                       max_tokens: int = 512, node_id: str | None = None, salt: str = "",
                       response_format: dict[str, Any] | None = None) -> Completion:
        key = request_key(self.model, messages, temperature, max_tokens, salt, endpoint=self.endpoint,
                          response_format=response_format)
        if self.use_cache:
            hit = self.store.cache_get(key)
            comp = cached_completion(hit, key) if hit is not None else None
            if comp is not None:
                comp.price_known = self.price is not None
                self._record(purpose, node_id, comp, None)
                return comp
            if hit is not None:  # asked again below; its answer replaces the row
                logging.getLogger(__name__).warning(
                    "The cached reply to request %s could not be read (not text: an older evolab cached a batch "
                    "reply it could not read); asking again.", key[:12])

        # Budget: reserve the worst case (prompt + max_tokens) of every call in flight, in USD and in tokens,
        # so the run stops before it could overspend, never after.
        reserve, reserve_tokens, counted = self._reservation(messages, max_tokens)
        over = self._over_budget(reserve, reserve_tokens)
        if over:
            raise BudgetExceeded(over)
        self._reserved_usd += reserve
        self._reserved_tokens += reserve_tokens
        try:
            extra = {"response_format": response_format} if response_format else {}
            comp = await self._send(messages, key=key, node_id=node_id, temperature=temperature,
                                    max_tokens=max_tokens, purpose=purpose, **extra)
        finally:
            self._reserved_usd -= reserve
            self._reserved_tokens -= reserve_tokens
        comp.request_hash = key
        if not comp.cached:  # a batch job's answer comes back already stored and counted (evolab/engine/batch.py)
            self._account(comp, counted)
            if self.use_cache:
                self.store.cache_put_later(key, self.model, comp.to_cache())  # before its call row: see _record
        self._record(purpose, node_id, comp, None)
        return comp

    async def _send(self, messages: Messages, *, key: str, node_id: str | None, **kw: Any) -> Completion:
        """One call through the rate limiter. A 429/503 the backend handed back (the limiter took those retries
        over) is sent again once the limiter lets it, up to the backend's max_retries times."""
        limiter = self.limiter
        tokens = estimate_prompt_tokens(messages) + kw["max_tokens"] if limiter.counts_tokens else 0
        attempts = 1 + (getattr(self.backend, "max_retries", 0) if limiter.adaptive else 0)
        ticket = None
        for attempt in range(1, attempts + 1):
            # A call a full server refused waits its own Retry-After (if any), not everyone's.
            ticket = await (limiter.acquire(tokens, retry_of=ticket) if ticket else limiter.acquire(tokens))
            start = time.perf_counter()
            try:
                comp = await self.backend.complete(messages, **kw)
            except RateLimited as e:
                limiter.release(ticket, outcome="rate_limited", retry_after=e.retry_after)
                error: LLMError = e
                if e.retry_after is not None and e.retry_after > MAX_RETRY_AFTER_S:
                    error = LLMError(f"Rate limited (HTTP {e.status}): the endpoint asks to wait {e.retry_after:.0f} s "
                                     f"(a daily quota?); try later. {e}")
                elif attempt < attempts:
                    continue
            except LLMError as e:
                limiter.release(ticket, outcome="error")
                error = e
            except BaseException:
                limiter.release(ticket, outcome="cancelled")
                raise
            else:
                limiter.release(ticket, used_tokens=comp.prompt_tokens + comp.completion_tokens)
                self.calls_made += 1
                return comp
            self._record(kw.get("purpose", ""), node_id, Completion(
                text="", model=self.model, request_hash=key, latency_s=time.perf_counter() - start), str(error))
            raise error
        raise AssertionError("unreachable")

    def _record(self, purpose: str, node_id: str | None, comp: Completion, error: str | None) -> None:
        """Store the call row on the store's writer thread (in order, after the call's cache row: a stored call
        is never paid again on resume), so a busy database never holds up requests in flight."""
        if self.store is None:
            return
        self.store.submit("add_call", LLMCall(
            purpose=purpose, model=comp.model, prompt_tokens=comp.prompt_tokens,
            completion_tokens=comp.completion_tokens, latency_s=comp.latency_s,
            cost_usd=0.0 if comp.cached else comp.cost_usd, price_known=comp.price_known,
            cached=comp.cached, error=mask_secrets(error) if error else None, run_id=self.run_id, node_id=node_id,
            request_hash=comp.request_hash, reasoning_tokens=comp.reasoning_tokens))

    async def aclose(self) -> None:
        if self.store is not None:
            await asyncio.to_thread(self.store.flush)
        await self.backend.aclose()


def client_for(store: Store, run_id: str, config: RunConfig, backend: Backend,
               stop_event: threading.Event | None = None) -> LLMClient:
    return LLMClient(backend, store, run_id=run_id, concurrency=config.concurrency, budget_usd=config.budget_usd,
                     structured=config.structured, budget_tokens=config.budget_tokens, price=config.price,
                     prices_file=config.prices_file, rpm=config.rpm, tpm=config.tpm, stop_event=stop_event)
