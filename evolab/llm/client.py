"""The client every part of evolab calls: a backend plus the request cache, one concurrency limit,
usage and cost accounting, a budget guard, and a stored row for every call."""
from __future__ import annotations

import asyncio
import hashlib
import json
import time

from ..schema import LLMCall, RunConfig
from ..store import Store
from .base import BACKENDS, Backend, BudgetExceeded, Completion, LLMError, Messages
from .local import LOCAL_MODEL_ALIAS, local_server
from .pricing import cost_usd, count_message_tokens, price_for


def request_key(model: str, messages: Messages, temperature: float, max_tokens: int, salt: str = "") -> str:
    """Cache key: the whole request. `salt` tells apart deliberate repeats (the same parent evolved
    again in a later round must not get the cached failure back)."""
    payload = json.dumps({"model": model, "messages": messages, "temperature": temperature,
                          "max_tokens": max_tokens, "salt": salt}, ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def make_backend(config: RunConfig) -> Backend:
    """The backend a run config names. No base URL means the embedded local model (started on demand)."""
    from . import openai_backend  # noqa: F401  (registers "openai")

    base_url = config.base_url
    if not base_url:
        base_url = local_server().ensure()
        return BACKENDS["openai"](model=LOCAL_MODEL_ALIAS, base_url=base_url, api_key_env=None,
                                  timeout_s=config.timeout_s, max_retries=config.max_retries)
    return BACKENDS["openai"](model=config.model, base_url=base_url, api_key_env=config.api_key_env,
                              timeout_s=config.timeout_s, max_retries=config.max_retries)


class LLMClient:
    def __init__(self, backend: Backend, store: Store | None = None, *, run_id: str | None = None,
                 concurrency: int = 8, budget_usd: float | None = None, use_cache: bool = True):
        self.backend = backend
        self.store = store
        self.run_id = run_id
        self.concurrency = max(1, int(concurrency))
        self._semaphore: asyncio.Semaphore | None = None
        self.budget_usd = budget_usd
        self.use_cache = use_cache and store is not None
        self.spent_usd = store.run_cost(run_id) if (store is not None and run_id) else 0.0
        self._reserved_usd = 0.0
        self.calls_made = 0  # requests that reached the backend (not cached)

    @property
    def model(self) -> str:
        return self.backend.model

    @property
    def semaphore(self) -> asyncio.Semaphore:
        if self._semaphore is None:  # created lazily inside the running loop
            self._semaphore = asyncio.Semaphore(self.concurrency)
        return self._semaphore

    def _worst_case_cost(self, messages: Messages, max_tokens: int) -> float:
        if self.budget_usd is None or price_for(self.model) is None:
            return 0.0
        return cost_usd(self.model, count_message_tokens(messages, self.model), max_tokens)[0]

    async def complete(self, messages: Messages, *, purpose: str, temperature: float = 0.0,
                       max_tokens: int = 512, node_id: str | None = None, salt: str = "") -> Completion:
        key = request_key(self.model, messages, temperature, max_tokens, salt)
        if self.use_cache:
            hit = self.store.cache_get(key)
            if hit is not None:
                comp = Completion(**hit, cached=True, request_hash=key)
                comp.price_known = price_for(self.model) is not None
                self._record(purpose, node_id, comp, None)
                return comp

        # Budget: reserve the worst case (prompt + max_tokens) of every call in flight, so the run
        # stops before it could overspend, never after.
        reserve = self._worst_case_cost(messages, max_tokens)
        if self.budget_usd is not None and self.spent_usd + self._reserved_usd + reserve > self.budget_usd:
            raise BudgetExceeded(
                f"Budget ${self.budget_usd:.4f} reached (spent ${self.spent_usd:.4f}); raise --budget-usd to go on.")
        self._reserved_usd += reserve
        try:
            async with self.semaphore:
                start = time.perf_counter()
                try:
                    comp = await self.backend.complete(messages, temperature=temperature, max_tokens=max_tokens,
                                                       purpose=purpose)
                except LLMError as e:
                    self._record(purpose, node_id, Completion(text="", model=self.model, request_hash=key,
                                                              latency_s=time.perf_counter() - start), str(e))
                    raise
                self.calls_made += 1
        finally:
            self._reserved_usd -= reserve
        comp.request_hash = key
        comp.cost_usd, comp.price_known = cost_usd(self.model, comp.prompt_tokens, comp.completion_tokens)
        self.spent_usd += comp.cost_usd
        if self.use_cache:
            self.store.cache_put(key, self.model, comp.to_cache())
        self._record(purpose, node_id, comp, None)
        return comp

    def _record(self, purpose: str, node_id: str | None, comp: Completion, error: str | None) -> None:
        if self.store is None:
            return
        self.store.add_call(LLMCall(
            purpose=purpose, model=comp.model, prompt_tokens=comp.prompt_tokens,
            completion_tokens=comp.completion_tokens, latency_s=comp.latency_s,
            cost_usd=0.0 if comp.cached else comp.cost_usd, price_known=comp.price_known,
            cached=comp.cached, error=error, run_id=self.run_id, node_id=node_id, request_hash=comp.request_hash))

    async def aclose(self) -> None:
        await self.backend.aclose()
