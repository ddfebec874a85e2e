"""The one interface every LLM backend implements, and the registry that names them."""
from __future__ import annotations

import json
import re
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
    finish_reason: str | None = None  # "length": the reply was cut at max_tokens
    reasoning_tokens: int = 0  # hidden reasoning (o-series, gpt-5): part of completion_tokens, billed as output

    def to_cache(self) -> dict[str, Any]:
        return {"text": self.text, "model": self.model, "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens, "latency_s": self.latency_s,
                "finish_reason": self.finish_reason, "reasoning_tokens": self.reasoning_tokens}


class LLMError(RuntimeError):
    """A call failed after the backend's own retries; the message says what to do. Anything in it that
    looks like a key is masked (endpoints echo keys in error texts), so it can be stored and shown."""

    def __init__(self, message: object = "") -> None:
        super().__init__(mask_secrets(str(message)))


# Key values read in this process (openai_backend.resolve_api_key adds them): masked wherever they appear.
_KNOWN_SECRETS: set[str] = set()
# Credentials inside a URL: `user:pass@` after the scheme (up to the last @ before the path, so a password with
# an unescaped @ is masked whole), and the value of a key-like query parameter (?api_key=..., &token=...).
_URL_PATTERNS = [
    (re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)[^ \t\r\n/?#@]*(?:@[^ \t\r\n/?#@]*)*@"), lambda m: m.group(1) + "***@"),
    (re.compile(r"(?i)([?&;](?:[a-z0-9_\-]*(?:key|token|secret|password|passwd|pwd|auth|sig|signature|"
                r"credential)s?)=)[^&#;\s\"'<>]+"), lambda m: m.group(1) + "***"),
]
_SECRET_PATTERNS = [*_URL_PATTERNS,
    # OpenAI-style keys (sk-..., sk-proj-...), Hugging Face, GitHub, Google, AWS access key ids
    (re.compile(r"\b(sk-|hf_|gh[pousr]_|AIza)[A-Za-z0-9_\-]{8,}"), lambda m: m.group(1) + "***"),
    (re.compile(r"\bAKIA[0-9A-Z]{16}\b"), lambda m: "AKIA***"),
    # Authorization: Bearer <token>
    (re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=\-]{6,}"), lambda m: m.group(1) + "***"),
    # a long hex/base64-ish token after "key", "token", "secret" or "password" (and a few separators)
    # (at least one digit: real keys have them, long words rarely do)
    (re.compile(r"(?i)((?<![a-z])(?:api[_ -]?)?(?:key|token|secret|password)s?\b[\"']?\s*(?:[:=]|is|provided:?)?"
                r"\s*[\"']?)((?=[A-Za-z+/_\-]*\d)[A-Za-z0-9+/_\-]{16,}={0,2}|[A-Za-z0-9_\-]*\*{3,}[A-Za-z0-9_\-]*)"),
     lambda m: m.group(1) + "***"),
]


def mask_secrets(text: str | None) -> str:
    """`text` with every key-like string replaced by `***` (keeping a recognisable prefix such as `sk-`)."""
    if not text:
        return text or ""
    for secret in sorted(_KNOWN_SECRETS, key=len, reverse=True):
        if secret and len(secret) >= 6:
            text = text.replace(secret, "***")
    for pattern, repl in _SECRET_PATTERNS:
        text = pattern.sub(repl, text)
    return text


def redact_url(url: str | None) -> str | None:
    """`url` as it may be stored or shown: credentials (`https://user:pass@host/...`) and key-like query values
    (`?api_key=...`) replaced by `***`; anything else, and None, as it is. It depends on the URL only (not on the
    keys this process has read), so it can name an endpoint in cache keys and embedder names."""
    if not url:
        return url
    for pattern, repl in _URL_PATTERNS:
        url = pattern.sub(repl, url)
    return url


class BudgetExceeded(RuntimeError):
    """Starting this call could spend more than the run's budget."""


# How an endpoint takes a JSON schema for the reply (`response_format`), found by probing it:
# "json_schema": OpenAI's form, also vLLM, Ollama, llama.cpp's llama-server;
# "json_object": `{"type": "json_object", "schema": ...}`, llama-cpp-python's server (the embedded model);
# "none": free text only.
STRUCTURED_MODES = ("json_schema", "json_object", "none")


def response_format(mode: str | None, name: str, schema: dict[str, Any]) -> dict[str, Any] | None:
    """The `response_format` body field that asks `mode`'s kind of endpoint for JSON matching `schema`."""
    if mode == "json_schema":
        # OpenAI's strict mode takes only a subset of JSON Schema: no length or numeric bounds (they are
        # checked when the reply is read). Grammar-based servers (json_object) get the whole schema.
        return {"type": "json_schema", "json_schema": {"name": name, "schema": _strict_subset(schema),
                                                       "strict": True}}
    if mode == "json_object":
        return {"type": "json_object", "schema": schema}
    return None


_UNSUPPORTED_IN_STRICT = {"maxLength", "minLength", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"}


def _strict_subset(schema: Any) -> Any:
    if isinstance(schema, dict):
        return {k: _strict_subset(v) for k, v in schema.items() if k not in _UNSUPPORTED_IN_STRICT}
    if isinstance(schema, list):
        return [_strict_subset(v) for v in schema]
    return schema


class Backend(Protocol):
    """A model behind a chat interface. `complete` raises LLMError when it gives up.

    `endpoint` names the server (its base URL, or "embedded"): the request cache and the structured-output
    probe are keyed by it, so two servers serving the same model name never share answers."""

    model: str
    endpoint: str

    async def complete(self, messages: Messages, *, temperature: float, max_tokens: int,
                       purpose: str = "", response_format: dict[str, Any] | None = None) -> Completion: ...

    async def aclose(self) -> None: ...


BACKENDS: dict[str, Callable[..., Backend]] = {}


def register_backend(name: str) -> Callable[[Callable[..., Backend]], Callable[..., Backend]]:
    def wrap(factory: Callable[..., Backend]) -> Callable[..., Backend]:
        BACKENDS[name] = factory
        return factory
    return wrap


# -- reading a chat reply's message (the online backend and batch results read it the same way) ---------
def json_kind(value: Any) -> str:
    """What a JSON value is, for a message: "a number", "a list", ..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return {int: "a number", float: "a number", str: "a string", list: "a list", dict: "an object"}.get(
        type(value), type(value).__name__)


def short_json(value: Any, limit: int = 60) -> str:
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, int) or isinstance(value, bool) \
        else (str(value) if value.bit_length() < 200 else "a number of %d bits" % value.bit_length())
    return text if len(text) <= limit else text[:limit] + "..."


def message_text(message: Any) -> str:
    """A chat message's text as the online backend reads it: the content string; no content is an empty reply;
    a list of text parts (OpenAI's content parts, [{"type": "text", "text": ...}]) is their text joined. Anything
    else is a ValueError: the reply is not text, and is never cached."""
    if not isinstance(message, dict):
        raise ValueError(f"the message is {json_kind(message)}, not an object")
    content = message.get("content")
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if not (isinstance(part, dict) and part.get("type", "text") in ("text", "output_text")
                    and isinstance(part.get("text"), str)):
                raise ValueError(f"a part of the content is {json_kind(part) if not isinstance(part, dict) else 'not text'}"
                                 f": {short_json(part)}")
            texts.append(part["text"])
        return "".join(texts)
    raise ValueError(f"the content is {json_kind(content)}, not text: {short_json(content)}")
