"""LLM scorers: difficulty (WizardLM's 1-10 question, appendix) and quality (AlpaGasus's 0-5 accuracy
rating, Chen et al. 2023, arXiv:2307.08701). A reply with no score in range is stored as missing, never 0."""
from __future__ import annotations

import re

from .llm.base import LLMError
from .llm.client import LLMClient
from .operations import load_template
from .schema import Score

_NUMBER = r"(\d+(?:\.\d+)?)"
# Most explicit first: "Score: 7", "7/10", "7 out of 10", then the first bare number in range.
_PATTERNS = [
    re.compile(r"(?:score|rating|difficulty|점수|난이도)\s*(?:is|of|=|:|：)?\s*\**\s*" + _NUMBER, re.I),
    re.compile(_NUMBER + r"\s*(?:/|out of)\s*\d+", re.I),
    re.compile(r"\d+\s*점?\s*(?:만점에|만점 중|중에서|중)\s*" + _NUMBER),  # "10점 만점에 6점": the score is last
    re.compile(_NUMBER + r"\s*점"),
    # A bare number: not part of a word, a version or a decimal; a full stop or a Korean ending may follow
    # ("I rate it 7.", "8입니다").
    re.compile(r"(?<![A-Za-z0-9_.-])" + _NUMBER + r"(?![A-Za-z0-9_]|\.\d)"),
]


def parse_score(text: str, low: float, high: float) -> float | None:
    """The score in [low, high] found anywhere in the reply, or None."""
    for pattern in _PATTERNS:
        for m in pattern.finditer(text or ""):
            try:
                value = float(m.group(1))
            except ValueError:
                continue
            if low <= value <= high:
                return value
    return None


async def score_difficulty(client: LLMClient, instruction: str, input: str = "", *, language: str = "en",
                           max_tokens: int = 16, node_id: str) -> Score:
    question = instruction if not input.strip() else f"{instruction}\n\n{input}"
    prompt = load_template("difficulty", language).render(instruction=question)
    return await _score(client, prompt, "difficulty", 1, 10, max_tokens, node_id)


async def score_quality(client: LLMClient, instruction: str, input: str, response: str, *,
                        language: str = "en", max_tokens: int = 256, node_id: str) -> Score:
    prompt = load_template("quality", language).render(instruction=instruction, input=input or "(none)",
                                                        response=response)
    return await _score(client, prompt, "quality", 0, 5, max_tokens, node_id)


async def _score(client: LLMClient, prompt: str, metric: str, low: float, high: float, max_tokens: int,
                 node_id: str) -> Score:
    try:
        comp = await client.complete([{"role": "user", "content": prompt}], purpose=metric, temperature=0.0,
                                     max_tokens=max_tokens, node_id=node_id)
    except LLMError as e:
        return Score(node_id, metric, None, client.model, f"scorer failed: {e}"[:300])
    value = parse_score(comp.text, low, high)
    detail = comp.text.strip()[:300] if value is not None else f"unparseable reply: {comp.text.strip()[:200]!r}"
    return Score(node_id, metric, value, client.model, detail)
