"""LLM scorers: difficulty (WizardLM's 1-10 question, appendix) and quality (AlpaGasus's 0-5 accuracy
rating, Chen et al. 2023, arXiv:2307.08701). Structured output first, then the free-text reader, then one
stricter retry (evolab.text.reading); a reply with no readable score is stored as missing (value None, the detail
says "unreadable"), never 0."""
from __future__ import annotations

from evolab.engine.operations import load_template
from evolab.llm.base import LLMError
from evolab.llm.client import LLMClient
from evolab.schema import Score
from evolab.text.reading import DIFFICULTY, QUALITY, ReplyKind, ask
from evolab.text.replies import read_score


def parse_score(text: str, low: float, high: float) -> float | None:
    """The score in [low, high] the reply gives, or None (evolab.text.replies.read_score)."""

    return read_score(text, low, high)


async def score_difficulty(client: LLMClient, instruction: str, input: str = "", *, language: str = "en",
                           max_tokens: int = 32, node_id: str, temperature: float = 0.0) -> Score:
    question = instruction if not input.strip() else f"{instruction}\n\n{input}"
    prompt = load_template("difficulty", language).render(instruction=question)
    return await _score(client, prompt, DIFFICULTY, "difficulty", max_tokens, node_id, language, temperature)


async def score_quality(client: LLMClient, instruction: str, input: str, response: str, *,
                        language: str = "en", max_tokens: int = 256, node_id: str, temperature: float = 0.0) -> Score:
    prompt = load_template("quality", language).render(instruction=instruction, input=input or "(none)",
                                                        response=response)
    return await _score(client, prompt, QUALITY, "quality", max_tokens, node_id, language, temperature)


async def _score(client: LLMClient, prompt: str, kind: ReplyKind, metric: str, max_tokens: int, node_id: str,
                 language: str, temperature: float) -> Score:
    try:
        reading = await ask(client, [{"role": "user", "content": prompt}], kind, purpose=metric,
                            temperature=temperature, max_tokens=max_tokens, node_id=node_id, language=language)
    except LLMError as e:
        return Score(node_id, metric, None, client.model, f"scorer failed: {e}"[:300])
    return Score(node_id, metric, reading.value, client.model, reading.describe(280))
