"""Any OpenAI-compatible endpoint (OpenAI, vLLM, Ollama, llama.cpp server, LM Studio) via `openai.AsyncOpenAI`.

Retries with exponential backoff on 429, 5xx, timeouts and connection errors are the client's own
(`max_retries`), except 429 and 503 while LLMClient's rate limiter is on: it retries those itself (see
ratelimit.py). We turn a final failure into an LLMError with a message that says what to do.
"""
from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import random
import re
import time
from typing import Any, Callable
from urllib.parse import urlsplit

from evolab.llm.base import (
    _KNOWN_SECRETS,
    STRUCTURED_MODES,
    Completion,
    LLMError,
    Messages,
    mask_secrets,
    message_text,
    redact_url,
    register_backend,
)
from evolab.llm.base import response_format as format_for
from evolab.llm.ratelimit import RateLimited, RateLimiter, parse_retry_after
from evolab.schema import RunConfig

# Many local servers ignore the key but the client insists on one.
PLACEHOLDER_KEY = "not-needed"
OPENAI_HOST = "api.openai.com"
# Which key variables the app may read (key_env_allowed; docs/endpoints.md, "Keys"): an LLM provider's key by its
# usual name (*_API_KEY: OPENAI_API_KEY, ANTHROPIC_API_KEY, GROQ_API_KEY, ...) or a name the server's owner lists in
# EVOLAB_KEY_VARS, and never a variable of a known secret family, even when listed: a cloud account's or a code
# host's credentials are not an LLM key, and whoever opens the page chooses the URL they are sent to.
KEY_ENV_SUFFIX = "_API_KEY"
KEY_ENV_SUFFIXES = (KEY_ENV_SUFFIX,)
KEY_VARS_ENV = "EVOLAB_KEY_VARS"
SECRET_FAMILIES = (
    # clouds
    "AWS", "AMAZON", "AZURE", "ARM", "GOOGLE", "GCP", "GCLOUD", "CLOUDSDK", "FIREBASE", "ALIBABA", "ALICLOUD",
    "OCI", "IBM", "DIGITALOCEAN", "HEROKU", "CLOUDFLARE", "CF", "VERCEL", "NETLIFY", "LINODE", "HCLOUD", "SCW",
    # code hosts, CI and package registries
    "GITHUB", "GH", "GITLAB", "BITBUCKET", "ACTIONS", "RUNNER", "CI", "CIRCLECI", "TRAVIS", "JENKINS", "NPM",
    "PYPI", "TWINE", "DOCKER", "DOCKERHUB", "CODECOV", "SONAR", "SNYK",
    # infrastructure, databases, identity, secret stores
    "KUBE", "K8S", "VAULT", "TF", "SSH", "GPG", "DATABASE", "DB", "POSTGRES", "PG", "MYSQL", "REDIS", "MONGO",
    "MONGODB", "OKTA", "AUTH0", "OP", "BW",
    # payments, messaging, monitoring
    "STRIPE", "PAYPAL", "SLACK", "TWILIO", "SENDGRID", "MAILGUN", "DATADOG", "DD", "SENTRY", "NEWRELIC",
)
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# The app sets this for its whole process (restrict_key_names): every key variable a run, judge or tuning session of
# the app reads follows key_env_allowed, whatever a store's run config says (RunConfig.restrict_key_env).
_RESTRICTED_PROCESS = False


def restrict_key_names() -> None:
    """Called by the app (app.py) once: from now on this process reads only allowed key variables
    (key_env_allowed) for any run config, a resumed run's from someone else's store included."""
    global _RESTRICTED_PROCESS
    _RESTRICTED_PROCESS = True


def key_names_restricted(config_says: bool = False) -> bool:
    """Whether a key variable named by a run config must pass key_env_allowed: when the config came from the app
    (`config_says`), or always in the app's process. A store can ask for more restriction, never for less."""
    return _RESTRICTED_PROCESS or bool(config_says)


def owner_key_vars() -> set[str]:
    """The names the server's owner listed in EVOLAB_KEY_VARS (comma-separated)."""
    return {v.strip() for v in os.environ.get(KEY_VARS_ENV, "").split(",") if v.strip()}


def secret_family(name: str) -> str | None:
    """The known secret family `name` belongs to (AWS for AWS_SECRET_ACCESS_KEY), or None."""
    upper = (name or "").strip().upper()
    for family in SECRET_FAMILIES:
        if upper == family or upper.startswith(family + "_"):
            return family
    return None


def key_env_problem(name: str) -> str | None:
    """Why the app may not read the variable `name` as a key, with what to do; None when it may."""
    name = (name or "").strip()
    if not _ENV_NAME.fullmatch(name):
        return (f"{name!r} is not a variable name: give the NAME of the environment variable that holds the key "
                "(e.g. OPENAI_API_KEY), never the key itself.")
    family = secret_family(name)
    if family:
        return (f"The app never reads {name!r}: {family}_* variables hold credentials of another service, not an "
                f"LLM key, and are refused even when listed in {KEY_VARS_ENV}. Put the LLM key in a variable of its "
                f"own (e.g. MY_LLM{KEY_ENV_SUFFIX}) where the app is started.")
    if name.upper().endswith(KEY_ENV_SUFFIX) or name in owner_key_vars():
        return None
    return (f"The app reads only key variables named *{KEY_ENV_SUFFIX} (OPENAI_API_KEY, ANTHROPIC_API_KEY, ...) or "
            f"listed by the server's owner in {KEY_VARS_ENV} (comma-separated, where the app is started); {name!r} "
            "is neither.")


def is_openai_url(base_url: str | None) -> bool:
    """True for OpenAI itself: no base URL, or an https URL whose parsed host is exactly api.openai.com
    (not api.openai.com.evil.example, not evil.example/api.openai.com)."""
    if base_url is None:
        return True
    try:
        parts = urlsplit(base_url.strip())
        return parts.scheme == "https" and (parts.hostname or "").lower() == OPENAI_HOST
    except ValueError:
        return False


def key_env_allowed(name: str) -> bool:
    """Whether the app may read the variable `name` as a key (key_env_problem says why not): a name ending in
    _API_KEY or one listed in EVOLAB_KEY_VARS, and in no known secret family (AWS_*, GITHUB_*, GH_*, AZURE_*,
    GOOGLE_*, GCP_*, ...: SECRET_FAMILIES), even when listed. Anything else of the server's environment (PATH,
    AWS_SECRET_ACCESS_KEY, GITHUB_TOKEN, ...) is not sent to a URL someone typed into the page."""
    return key_env_problem(name) is None


def same_endpoint_host(a: str | None, b: str | None) -> bool:
    """Whether two base URLs are the same server: same scheme, host and port (no URL is api.openai.com)."""
    def origin(url: str | None) -> tuple[str, str, int | None] | None:
        try:
            parts = urlsplit((url or "https://api.openai.com/v1").strip())
            return parts.scheme.lower(), (parts.hostname or "").lower(), parts.port or (
                443 if parts.scheme.lower() == "https" else 80 if parts.scheme.lower() == "http" else None)
        except ValueError:
            return None
    first, second = origin(a), origin(b)
    return first is not None and first == second and bool(first[1])


def key_env_for(base_url: str | None, api_key_env: str | None, *, run_base_url: str | None,
                run_key_env: str | None) -> str | None:
    """The key variable for calls to `base_url` when a command names another endpoint than a run's (judge,
    tune): the one given for it, else the run's own only when `base_url` is the run's own server. A changed base
    URL never inherits the run's key variable: None (then no key, or OPENAI_API_KEY for api.openai.com itself)."""
    if api_key_env:
        return api_key_env
    if not base_url or same_endpoint_host(base_url, run_base_url):
        return run_key_env
    return None


def with_endpoint(config: RunConfig, *, base_url: str | None = None, model: str | None = None,
                  api_key_env: str | None = None) -> tuple[RunConfig, str | None]:
    """`config` with another endpoint or model (a judge's, an optimizer's: `judge`, `tune`), and a note for the user
    when the run's key variable was not carried over to another server (None otherwise). The key variable follows
    key_env_for; a name given here is the command line's, so a stored restrict_key_env does not apply to it
    (in the app's process, restrict_key_names applies to every name anyway)."""
    key_env = key_env_for(base_url, api_key_env, run_base_url=config.base_url, run_key_env=config.api_key_env)
    note = None
    if config.api_key_env and not key_env:
        note = (f"--base-url names another server than the run's ({redact_url(config.base_url) or OPENAI_HOST}), so "
                f"the run's key variable {config.api_key_env} is not sent to it; name its key with --api-key-env NAME.")
    return dataclasses.replace(config, base_url=base_url or config.base_url, model=model or config.model,
                               api_key_env=key_env,
                               restrict_key_env=bool(config.restrict_key_env and not api_key_env)), note


def resolve_api_key(api_key_env: str | None, base_url: str | None = None, *, restrict_names: bool = False,
                    owner_named: bool = False) -> str:
    """Read the key from the environment variable whose *name* is configured. The key is never stored.

    With no name configured, OPENAI_API_KEY is used only for OpenAI itself: an OpenAI key is not sent
    to some other server just because it is in the environment. `restrict_names` (a name that came from
    the app), and any name in the app's process (restrict_key_names), refuses variables the app may not read
    (key_env_allowed). `owner_named`: the name comes from the server's environment or the command line, never
    from a page or a store (EVOLAB_EMBED_KEY_ENV, `embed --api-key-env`), and is read as it is."""
    if not api_key_env:
        value = os.environ.get("OPENAI_API_KEY") if is_openai_url(base_url) else None
        if value:
            _KNOWN_SECRETS.add(value)
        return value or PLACEHOLDER_KEY
    if not owner_named and key_names_restricted(restrict_names):
        problem = key_env_problem(api_key_env)
        if problem:
            raise LLMError(problem)
    value = os.environ.get(api_key_env)
    if not value:
        raise LLMError(
            f"The environment variable {api_key_env} is not set: export {api_key_env}=<your key> "
            f"(or choose another variable name) and try again.")
    _KNOWN_SECRETS.add(value)
    return value


# -- reasoning models -----------------------------------------------------------------------------------
# Parameter quirks: "max_completion_tokens" (the endpoint rejects max_tokens) and "default_sampling" (it
# rejects any temperature or top_p but the default). OpenAI's o-series and gpt-5 families have both.
MAX_COMPLETION_TOKENS, DEFAULT_SAMPLING = "max_completion_tokens", "default_sampling"
REASONING_FAMILIES = ("o1", "o1-mini", "o3", "o3-mini", "o3-pro", "o4-mini", "gpt-5", "gpt-5-mini", "gpt-5-nano")
_SNAPSHOT = re.compile(r"-(?:\d{4}-\d{2}-\d{2}|\d{4})$")


def known_quirks(model: str) -> set[str]:
    """The quirks of a known reasoning family: exact ids, their dated snapshots (o3-2025-04-16) and provider
    prefixes (openai/o3). Not by name prefix: o3-something-else is learned from its endpoint's 400 instead."""
    name = model.strip().rsplit("/", 1)[-1].lower()
    if name in REASONING_FAMILIES or _SNAPSHOT.sub("", name) in REASONING_FAMILIES:
        return {MAX_COMPLETION_TOKENS, DEFAULT_SAMPLING}
    return set()


def quirks_from_error(message: str, param: str | None = None) -> set[str]:
    """What a 400 says the model does not take, e.g. OpenAI's "Unsupported parameter: 'max_tokens' is not
    supported with this model. Use 'max_completion_tokens' instead." or "Unsupported value: 'temperature'
    does not support 0.7 with this model. Only the default (1) value is supported." """
    low = (message or "").lower()
    found = set()
    if "max_completion_tokens" in low and ("max_tokens" in low.replace("max_completion_tokens", "") or
                                           param == "max_tokens"):
        found.add(MAX_COMPLETION_TOKENS)
    if "unsupported" in low or "not supported" in low or "only the default" in low:
        if param in ("temperature", "top_p") or re.search(r"'(temperature|top_p)'", low):
            found.add(DEFAULT_SAMPLING)
    return found


def sampling_params(quirks: set[str], temperature: float, max_tokens: int) -> dict[str, Any]:
    """The length cap and sampling fields of a request for a model with these quirks."""
    params: dict[str, Any] = {"max_completion_tokens" if MAX_COMPLETION_TOKENS in quirks else "max_tokens": max_tokens}
    if DEFAULT_SAMPLING not in quirks:
        params["temperature"] = temperature
    return params


@register_backend("openai")
class OpenAICompatibleBackend:
    def __init__(self, model: str, base_url: str | None = None, api_key_env: str | None = None,
                 timeout_s: float = 120.0, max_retries: int = 6, endpoint: str | None = None,
                 restrict_key_names: bool = False, concurrency: int | None = None, **_: object):
        """`concurrency`: the most calls the run keeps in flight; the connection pool keeps that many connections
        alive between calls (the openai client's default keeps 100: above that, every call would reconnect)."""
        import openai  # the CLI's --help must not pay for this import

        self.model = model
        self.base_url = base_url
        # The endpoint as cache keys, the store's notes on it and messages name it: credentials in the URL masked.
        self.endpoint = endpoint or redact_url((base_url or "https://api.openai.com/v1").rstrip("/"))
        self.max_retries = max_retries
        self._openai = openai
        # Parameter quirks of this model (reasoning models): known families now, others learned from a 400;
        # LLMClient loads what the store remembers per (endpoint, model) and sets on_param_quirks to save more.
        self.param_quirks: set[str] = known_quirks(model)
        self.on_param_quirks: Callable[[set[str], str], None] | None = None
        # LLMClient's rate limiter sees every HTTP reply, the openai client's retries included, through an httpx
        # hook: cheaper than with_raw_response (no wrapper object per call) and it also sees the 429s that
        # with_raw_response would hide behind the client's own retries.
        self.rate_limiter: RateLimiter | None = None
        http = _http_module()
        self._http_response = http.Response  # `post` hands such a reply back as it is
        default = openai.DEFAULT_CONNECTION_LIMITS
        limits = http.Limits(max_connections=max(default.max_connections or 0, concurrency or 0),
                             max_keepalive_connections=max(default.max_keepalive_connections or 0, concurrency or 0),
                             keepalive_expiry=default.keepalive_expiry)
        self._client = openai.AsyncOpenAI(
            base_url=base_url, api_key=resolve_api_key(api_key_env, base_url, restrict_names=restrict_key_names),
            timeout=timeout_s, max_retries=max_retries,
            http_client=openai.DefaultAsyncHttpxClient(event_hooks={"response": [self._on_response]}, limits=limits))

    async def _on_response(self, response: Any) -> None:
        limiter = self.rate_limiter
        if limiter is None or not limiter.adaptive:
            return
        if response.status_code in (429, 503):
            # The limiter retries these itself, after a pause every call waits out; the openai client would
            # retry each one on its own schedule, walking into the same full server again.
            response.headers["x-should-retry"] = "false"
            limiter.pause(parse_retry_after(response.headers))
        limiter.observe_headers(response.headers)

    async def _create(self, client: Any, *, messages: Messages, temperature: float, max_tokens: int,
                      reasoning_max_tokens: int | None = None, response_format: dict[str, Any] | None = None,
                      purpose: str = "") -> dict[str, Any]:
        """POST /chat/completions with this model's parameter quirks; the reply's JSON object. A 400 that names a
        quirk not yet applied ("Use 'max_completion_tokens' instead", "Only the default (1) value is supported")
        is learned, reported through on_param_quirks, and the call is sent again with it fixed.

        Through the client's own `post` (its retries, errors and headers) rather than chat.completions.create:
        that one walks every parameter through the SDK's type-driven transform and builds a pydantic model of
        the reply, together about a quarter of the client's CPU per call, for a body we already build as JSON
        and a reply of which we read five fields."""
        # Lets a proxy or a stub tell evolve from judge calls; endpoints ignore unknown headers.
        options = {"headers": {"X-Evolab-Purpose": purpose} if purpose else {}, "security": {"bearer_auth": True}}
        while True:
            used = set(self.param_quirks)
            cap = reasoning_max_tokens if (reasoning_max_tokens and MAX_COMPLETION_TOKENS in used) else max_tokens
            body: dict[str, Any] = {"model": self.model, "messages": messages, **sampling_params(used, temperature, cap)}
            if response_format:
                body["response_format"] = response_format
            try:
                response = await client.post("/chat/completions", body=body, cast_to=self._http_response,
                                             options=options)
            except self._openai.BadRequestError as e:
                learned = quirks_from_error(str(e), getattr(e, "param", None)) - used
                if not learned:
                    raise
                self.param_quirks |= learned
                if self.on_param_quirks is not None:
                    self.on_param_quirks(set(self.param_quirks), _short(e, 200))
                continue
            try:
                data = json.loads(response.content)
            except ValueError as e:  # also UnicodeDecodeError
                raise _UnreadableReply(f"The endpoint sent a reply evolab could not read: {_short(e)}") from e
            if not isinstance(data, dict):
                raise _UnreadableReply(f"The endpoint sent a reply evolab could not read: not a JSON object "
                                       f"({type(data).__name__})")
            return data

    async def complete(self, messages: Messages, *, temperature: float, max_tokens: int,
                       purpose: str = "", response_format: dict[str, Any] | None = None) -> Completion:
        """The openai client retries 429, 5xx, timeouts and dropped connections itself; a 200 reply
        that cannot be read (not JSON, no choices: a proxy hiccup) it returns as is, so those are
        retried here, with the same `max_retries`."""
        start = time.perf_counter()
        for attempt in range(self.max_retries + 1):
            try:
                comp = await self._complete_once(messages, temperature=temperature, max_tokens=max_tokens,
                                                 purpose=purpose, response_format=response_format)
            except _UnreadableReply as e:
                if attempt >= self.max_retries:
                    raise LLMError(str(e)) from e.__cause__
                await asyncio.sleep(min(0.25 * 2 ** attempt, 4.0) * (1 - 0.25 * random.random()))
                continue
            comp.latency_s = time.perf_counter() - start
            return comp
        raise AssertionError("unreachable")

    async def _complete_once(self, messages: Messages, *, temperature: float, max_tokens: int,
                             purpose: str, response_format: dict[str, Any] | None = None) -> Completion:
        openai = self._openai
        start = time.perf_counter()
        try:
            data = await self._create(self._client, messages=messages, temperature=temperature, max_tokens=max_tokens,
                                      response_format=response_format, purpose=purpose)
        except openai.AuthenticationError as e:
            raise LLMError(f"The endpoint {self.base_url or 'api.openai.com'} rejected the key "
                           f"(401): check the key variable. {_short(e)}") from e
        except openai.NotFoundError as e:
            raise LLMError(f"The endpoint {self.base_url or 'api.openai.com'} does not know model "
                           f"{self.model!r} (404): check the model name. {_short(e)}") from e
        except openai.RateLimitError as e:
            raise RateLimited(f"Rate limited (429) after all retries: lower the concurrency or try later. "
                              f"{_short(e)}", 429, parse_retry_after(e.response.headers)) from e
        except openai.APITimeoutError as e:
            raise LLMError(f"The endpoint did not answer in time after all retries: raise the timeout "
                           f"or lower the concurrency. {_short(e)}") from e
        except openai.APIConnectionError as e:
            raise LLMError(f"Cannot reach {self.base_url or 'api.openai.com'}: is the server running "
                           f"and the URL right? {_short(e)}") from e
        except openai.BadRequestError as e:
            raise LLMError(f"The endpoint rejected the request (400): {_short(e)}") from e
        except openai.APIStatusError as e:
            error = RateLimited if e.status_code == 503 else LLMError  # 503: a full self-hosted server
            extra_args = (503, parse_retry_after(e.response.headers)) if e.status_code == 503 else ()
            raise error(f"The endpoint answered HTTP {e.status_code} after all retries. {_short(e)}",
                        *extra_args) from e
        except (openai.APIError, ValueError, TypeError, KeyError) as e:
            # Malformed bodies surface as parse errors inside the client.
            raise _UnreadableReply(f"The endpoint sent a reply evolab could not read: {_short(e)}") from e
        latency = time.perf_counter() - start
        try:
            choice = data["choices"][0]
            text = message_text(choice["message"])  # a reply that is not text is unreadable, never cached
            usage = data.get("usage")
            return Completion(
                text=text, model=data.get("model") or self.model,
                prompt_tokens=_count(usage, "prompt_tokens"), completion_tokens=_count(usage, "completion_tokens"),
                latency_s=latency, finish_reason=choice.get("finish_reason"),
                reasoning_tokens=_reasoning_tokens(usage),
            )
        except (AttributeError, IndexError, KeyError, TypeError, ValueError) as e:
            raise _UnreadableReply(f"The endpoint's reply has no message content: {_short(e)}") from e

    async def probe_structured(self) -> tuple[str | None, Completion | None, str]:
        """Which `response_format` form this endpoint honours for this model: (mode, the probe's last
        completion, what was seen). Each form is tried once, without retries: a 4xx/5xx answer or a reply
        that is not the JSON asked for means "not this form". The mode is None when the endpoint could not
        be asked (unreachable, rate limited): then nothing should be remembered."""
        openai = self._openai
        schema = {"type": "object", "properties": {"answer": {"type": "integer"}}, "required": ["answer"],
                  "additionalProperties": False}
        messages = [{"role": "user", "content": 'What is 2 + 3? Reply in JSON: {"answer": <number>}.'}]
        client = self._client.with_options(max_retries=0, timeout=60)
        seen, last = [], None
        for mode in STRUCTURED_MODES[:-1]:
            start = time.perf_counter()
            try:
                # A reasoning model spends part of its cap thinking: give it room to answer.
                data = await self._create(
                    client, messages=messages, temperature=0.0, max_tokens=32, reasoning_max_tokens=1024,
                    response_format=format_for(mode, "probe", schema), purpose="probe")
            except (openai.RateLimitError, openai.APIConnectionError, openai.APITimeoutError,
                    openai.AuthenticationError) as e:
                return None, last, f"could not ask: {_short(e, 160)}"
            except openai.APIStatusError as e:
                seen.append(f"{mode}: HTTP {e.status_code}")
                continue
            except (openai.APIError, _UnreadableReply, ValueError, TypeError, KeyError) as e:
                seen.append(f"{mode}: unreadable reply ({_short(e, 80)})")
                continue
            try:
                choices = data.get("choices")
                text = (choices[0]["message"].get("content") or "") if choices else ""
                usage = data.get("usage")
                last = Completion(text=text, model=self.model, latency_s=time.perf_counter() - start,
                                  prompt_tokens=_count(usage, "prompt_tokens"),
                                  completion_tokens=_count(usage, "completion_tokens"),
                                  reasoning_tokens=_reasoning_tokens(usage))
            except (AttributeError, IndexError, KeyError, TypeError, ValueError) as e:
                seen.append(f"{mode}: unreadable reply ({_short(e, 80)})")
                continue
            try:
                ok = isinstance(json.loads(text), dict)
            except ValueError:
                ok = False
            if ok:
                return mode, last, "; ".join(seen + [f"{mode}: JSON"])
            seen.append(f"{mode}: accepted but the reply was not JSON")
        return "none", last, "; ".join(seen)

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


def _http_module() -> Any:
    """The HTTP library under the openai client (httpx2 for openai 3.x, httpx before)."""
    try:
        import httpx2  # the openai client's HTTP library (which one depends on its version)
        return httpx2
    except ImportError:
        import httpx  # the openai client's HTTP library (which one depends on its version)
        return httpx


class _UnreadableReply(Exception):
    """A reply that arrived but could not be read: retried by `complete`, then an LLMError."""


def _count(usage: Any, name: str) -> int:
    """usage[name] as an int; 0 when the reply has no usage or not that count."""
    return int(usage.get(name) or 0) if isinstance(usage, dict) else 0


def _reasoning_tokens(usage: Any) -> int:
    """usage.completion_tokens_details.reasoning_tokens (OpenAI; included in completion_tokens), else 0."""
    details = usage.get("completion_tokens_details") if isinstance(usage, dict) else None
    return _count(details, "reasoning_tokens")


def _short(e: Exception, limit: int = 300) -> str:
    """An error's text on one line, cut to `limit`, with anything that looks like a key masked."""
    text = mask_secrets(str(e).replace("\n", " "))
    return text if len(text) <= limit else text[:limit] + "..."
