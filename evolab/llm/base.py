"""The one interface every LLM backend implements, and the registry that names them."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Protocol

Messages = list[dict[str, str]]


@dataclass
class Completion:
    """What a call returns: the text plus what it cost and whether the cache answered it."""

    text: str
    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    cached: bool = False
    cost_usd: float = 0.0
    price_known: bool = True
    request_hash: str | None = None

    def to_cache(self) -> dict[str, Any]:
        return {"text": self.text, "model": self.model, "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens, "latency_s": self.latency_s}


class LLMError(RuntimeError):
    """A call failed after the backend's own retries; the message says what to do."""


class BudgetExceeded(RuntimeError):
    """Starting this call could spend more than the run's budget."""


class Backend(Protocol):
    """A model behind a chat interface. `complete` raises LLMError when it gives up."""

    model: str

    async def complete(self, messages: Messages, *, temperature: float, max_tokens: int,
                       purpose: str = "") -> Completion: ...

    async def aclose(self) -> None: ...


BACKENDS: dict[str, Callable[..., Backend]] = {}


def register_backend(name: str) -> Callable[[Callable[..., Backend]], Callable[..., Backend]]:
    def wrap(factory: Callable[..., Backend]) -> Callable[..., Backend]:
        BACKENDS[name] = factory
        return factory
    return wrap
