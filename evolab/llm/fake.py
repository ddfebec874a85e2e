"""A scripted model for tests and benchmarks: queued replies or a handler, records prompts, counts tokens.

`scripted_reply` gives a plausible reply for each purpose so a whole run works without a model;
the HTTP stub server (`evolab.testing.stub_server`) answers with the same function.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time
from collections import deque
from typing import Any, Callable

from evolab.llm.base import Completion, LLMError, Messages, register_backend

Handler = Callable[[Messages, str], str]


def _tokens(text: str) -> int:
    return len(re.findall(r"\w+|[^\w\s]", text))


def given_prompt(messages: Messages) -> str:
    """The instruction inside an evolving prompt (between #Given Prompt# and #Rewritten Prompt# or, for
    in-breadth, #Created Prompt#)."""
    text = messages[-1]["content"]
    if "#Given Prompt#" not in text:
        return text.strip()[-300:]
    # The last marker opens the instruction: the rules above it may name the markers too.
    rest = text.rsplit("#Given Prompt#", 1)[1].lstrip(":")
    return re.split(r"#(?:Rewritten|Created) Prompt#", rest)[0].strip()


EXTRA_CLAUSES = [
    "Explain each step of your reasoning.",
    "Limit the answer to three paragraphs and cite one concrete example.",
    "Compare at least two alternative approaches and justify the choice.",
    "Include a short table that summarises the key figures.",
    "Consider the case of a small business with a limited budget.",
    "Address one common misconception along the way.",
]

# A cooperative model rewrites and answers a Korean prompt in Korean (evolab's language_drift rule checks that).
EXTRA_CLAUSES_KO = [
    "추론 과정을 단계별로 설명하세요.",
    "답변은 세 문단 이내로 하고 구체적인 예를 하나 드세요.",
    "두 가지 이상의 접근법을 비교하고 선택한 이유를 밝히세요.",
    "핵심 수치를 정리한 짧은 표를 포함하세요.",
    "예산이 제한된 소규모 사업자의 경우를 고려하세요.",
    "흔한 오해 하나를 함께 짚어 주세요.",
]


def _korean(text: str) -> bool:
    """Hangul makes up at least a fifth of the letters (evolab.text.language's rule; llm sits below text)."""
    hangul = len(re.findall("[\uac00-\ud7a3]", text))
    return hangul > 0 and hangul / max(1, sum(map(str.isalpha, text))) >= 0.2


def scripted_reply(messages: Messages, purpose: str) -> str:
    """A deterministic reply that exercises the whole pipeline like a cooperative model would."""
    text = messages[-1]["content"]
    h = int(hashlib.sha256(text.encode("utf-8")).hexdigest(), 16)
    if purpose == "evolve":
        given = given_prompt(messages).split("\n#Input#")[0].strip()
        header = "#Created Prompt#" if "#Created Prompt#" in text else "#Rewritten Prompt#"
        clauses = EXTRA_CLAUSES_KO if _korean(given) else EXTRA_CLAUSES
        return f"{header}:\n{given} {clauses[h % len(clauses)]}"
    if purpose == "respond":
        if _korean(text):
            # filler words without digits: Korean number reading takes digits joined to Hangul (50만 원, 4%),
            # and a cooperative answer in words has no final number to check
            words = " ".join(f"요점{chr(0xAC00 + ((h >> i) % 97) * 28)}" for i in range(90))
            return f"자세한 답변입니다. 먼저 핵심 개념을 살펴보겠습니다. {words}. 요약하면, 상황에 따라 다릅니다."
        words = " ".join(f"point{(h >> i) % 97}" for i in range(90))
        return f"Here is a careful answer. First, consider the main idea. {words}. In summary, it depends."
    if purpose == "equal":
        return "Not Equal"
    if purpose == "difficulty":
        return f"Difficulty: {3 + len(text) % 6}"
    if purpose == "quality":
        return f"Score: {3.5 + (h % 4) * 0.5}\nThe answer is mostly accurate."
    if purpose == "judge":
        return f"{6 + h % 4} {6 + (h >> 3) % 4}\nBoth answers are helpful."
    return "OK"


def scripted_structured_reply(messages: Messages, purpose: str) -> str:
    """The same verdicts as `scripted_reply`, as the JSON a model with structured output returns."""
    text = messages[-1]["content"]
    h = int(hashlib.sha256(text.encode("utf-8")).hexdigest(), 16)
    if purpose == "equal":
        return json.dumps({"verdict": "Not Equal"})
    if purpose == "difficulty":
        return json.dumps({"score": 3 + len(text) % 6})
    if purpose == "quality":
        return json.dumps({"reason": "The answer is mostly accurate.", "score": 3.5 + (h % 4) * 0.5})
    if purpose == "judge":
        return json.dumps({"reason": "Both answers are helpful.", "assistant_1": 6 + h % 4,
                           "assistant_2": 6 + (h >> 3) % 4})
    if purpose == "probe":
        return json.dumps({"answer": 5})
    return scripted_reply(messages, purpose)


@register_backend("fake")
class FakeBackend:
    """Replies from a queue, else from `handler`, else `scripted_reply`.

    A queued reply that is an Exception is raised (as LLMError unless it already is one), to script failures.
    `latency` (seconds, or a callable returning seconds) simulates a slow endpoint.
    """

    def __init__(self, model: str = "fake", replies: list[str | Exception] | None = None,
                 handler: Handler | None = None, latency: float | Callable[[], float] = 0.0,
                 structured_mode: str = "none", endpoint: str = "fake", **_: object):
        self.model = model
        self.endpoint = endpoint
        # Which response_format form it honours (see base.STRUCTURED_MODES); with one, the default
        # handler answers judges and scorers in JSON.
        self.structured_mode = structured_mode
        self.queue: deque[str | Exception] = deque(replies or [])
        self.handler = handler or scripted_reply
        self.latency = latency
        self.requests: list[dict] = []

    async def complete(self, messages: Messages, *, temperature: float, max_tokens: int,
                       purpose: str = "", response_format: dict[str, Any] | None = None) -> Completion:
        start = time.perf_counter()
        self.requests.append({"messages": messages, "temperature": temperature,
                              "max_tokens": max_tokens, "purpose": purpose, "response_format": response_format})
        delay = self.latency() if callable(self.latency) else self.latency
        if delay:
            await asyncio.sleep(delay)
        if self.queue:
            reply = self.queue.popleft()
        elif response_format and self.handler is scripted_reply:
            reply = scripted_structured_reply(messages, purpose)
        else:
            reply = self.handler(messages, purpose)
        if isinstance(reply, Exception):
            raise reply if isinstance(reply, LLMError) else LLMError(str(reply))
        prompt_tokens = sum(_tokens(m["content"]) + 4 for m in messages)
        return Completion(text=reply, model=self.model, prompt_tokens=prompt_tokens,
                          completion_tokens=min(max_tokens, _tokens(reply)),
                          latency_s=time.perf_counter() - start)

    async def aclose(self) -> None:
        return None
