"""Any OpenAI-compatible endpoint (OpenAI, vLLM, Ollama, llama.cpp server, LM Studio) via `openai.AsyncOpenAI`.

Retries with exponential backoff on 429, 5xx, timeouts and connection errors are the client's own
(`max_retries`); we only turn a final failure into an LLMError with a message that says what to do.
"""
from __future__ import annotations

import asyncio
import os
import random
import time

from .base import Completion, LLMError, Messages, register_backend

# Many local servers ignore the key but the client insists on one.
PLACEHOLDER_KEY = "not-needed"


def resolve_api_key(api_key_env: str | None, base_url: str | None = None) -> str:
    """Read the key from the environment variable whose *name* is configured. The key is never stored.

    With no name configured, OPENAI_API_KEY is used only for OpenAI itself: an OpenAI key is not sent
    to some other server just because it is in the environment."""
    if not api_key_env:
        if base_url is None or "api.openai.com" in base_url:
            return os.environ.get("OPENAI_API_KEY") or PLACEHOLDER_KEY
        return PLACEHOLDER_KEY
    value = os.environ.get(api_key_env)
    if not value:
        raise LLMError(
            f"The environment variable {api_key_env} is not set: export {api_key_env}=<your key> "
            f"(or choose another variable name) and try again.")
    return value


@register_backend("openai")
class OpenAICompatibleBackend:
    def __init__(self, model: str, base_url: str | None = None, api_key_env: str | None = None,
                 timeout_s: float = 120.0, max_retries: int = 6, **_: object):
        import openai  # the CLI's --help must not pay for this import

        self.model = model
        self.base_url = base_url
        self.max_retries = max_retries
        self._openai = openai
        self._client = openai.AsyncOpenAI(
            base_url=base_url, api_key=resolve_api_key(api_key_env, base_url), timeout=timeout_s, max_retries=max_retries)

    async def complete(self, messages: Messages, *, temperature: float, max_tokens: int,
                       purpose: str = "") -> Completion:
        """The openai client retries 429, 5xx, timeouts and dropped connections itself; a 200 reply
        that cannot be read (not JSON, no choices: a proxy hiccup) it returns as is, so those are
        retried here, with the same `max_retries`."""
        start = time.perf_counter()
        for attempt in range(self.max_retries + 1):
            try:
                comp = await self._complete_once(messages, temperature=temperature, max_tokens=max_tokens,
                                                 purpose=purpose)
            except _UnreadableReply as e:
                if attempt >= self.max_retries:
                    raise LLMError(str(e)) from e.__cause__
                await asyncio.sleep(min(0.25 * 2 ** attempt, 4.0) * (1 - 0.25 * random.random()))
                continue
            comp.latency_s = time.perf_counter() - start
            return comp
        raise AssertionError("unreachable")

    async def _complete_once(self, messages: Messages, *, temperature: float, max_tokens: int,
                             purpose: str) -> Completion:
        openai = self._openai
        start = time.perf_counter()
        try:
            resp = await self._client.chat.completions.create(
                model=self.model, messages=messages, temperature=temperature, max_tokens=max_tokens,
                # Lets a proxy or a stub tell evolve from judge calls; endpoints ignore unknown headers.
                extra_headers={"X-Evolab-Purpose": purpose} if purpose else None,
            )
        except openai.AuthenticationError as e:
            raise LLMError(f"The endpoint {self.base_url or 'api.openai.com'} rejected the key "
                           f"(401): check the key variable. {_short(e)}") from e
        except openai.NotFoundError as e:
            raise LLMError(f"The endpoint {self.base_url or 'api.openai.com'} does not know model "
                           f"{self.model!r} (404): check the model name. {_short(e)}") from e
        except openai.RateLimitError as e:
            raise LLMError(f"Rate limited (429) after all retries: lower the concurrency or try later. "
                           f"{_short(e)}") from e
        except openai.APITimeoutError as e:
            raise LLMError(f"The endpoint did not answer in time after all retries: raise the timeout "
                           f"or lower the concurrency. {_short(e)}") from e
        except openai.APIConnectionError as e:
            raise LLMError(f"Cannot reach {self.base_url or 'api.openai.com'}: is the server running "
                           f"and the URL right? {_short(e)}") from e
        except openai.APIStatusError as e:
            raise LLMError(f"The endpoint answered HTTP {e.status_code} after all retries. {_short(e)}") from e
        except (openai.APIError, ValueError, TypeError, KeyError) as e:
            # Malformed bodies surface as parse errors inside the client.
            raise _UnreadableReply(f"The endpoint sent a reply evolab could not read: {_short(e)}") from e
        latency = time.perf_counter() - start
        try:
            text = resp.choices[0].message.content or ""
        except (AttributeError, IndexError, TypeError) as e:
            raise _UnreadableReply(f"The endpoint's reply has no message content: {_short(e)}") from e
        usage = getattr(resp, "usage", None)
        return Completion(
            text=text, model=getattr(resp, "model", None) or self.model,
            prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
            completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
            latency_s=latency,
        )

    async def check(self) -> None:
        """Fail fast before a run when the endpoint cannot be reached or rejects the key.
        Other answers (some servers have no /models) are fine: the run will tell."""
        openai = self._openai
        try:
            await self._client.with_options(max_retries=1, timeout=15).models.list()
        except openai.AuthenticationError as e:
            raise LLMError(f"The endpoint {self.base_url or 'api.openai.com'} rejected the key (401): "
                           f"check the key variable. {_short(e)}") from e
        except (openai.APIConnectionError, openai.APITimeoutError) as e:
            raise LLMError(f"Cannot reach {self.base_url or 'api.openai.com'}: is the server running and "
                           f"the URL right? {_short(e)}") from e
        except openai.APIError:
            pass

    async def aclose(self) -> None:
        await self._client.close()


class _UnreadableReply(Exception):
    """A reply that arrived but could not be read: retried by `complete`, then an LLMError."""


def _short(e: Exception, limit: int = 300) -> str:
    text = str(e).replace("\n", " ")
    return text if len(text) <= limit else text[:limit] + "..."
