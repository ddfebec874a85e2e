"""The responder: answers an instruction (with its input) with the LLM."""
from __future__ import annotations

from evolab.engine.operations import load_template
from evolab.llm.base import Completion
from evolab.llm.client import LLMClient


def response_prompt(instruction: str, input: str = "", language: str = "en") -> str:
    if input.strip():
        return load_template("respond_with_input", language).render(instruction=instruction, input=input)
    return load_template("respond", language).render(instruction=instruction)


async def respond_completion(client: LLMClient, instruction: str, input: str = "", *, language: str = "en",
                             temperature: float = 0.7, max_tokens: int = 1024, node_id: str | None = None,
                             salt: str = "") -> Completion:
    """The answer's whole completion (its finish_reason says whether it was cut at max_tokens)."""
    return await client.complete([{"role": "user", "content": response_prompt(instruction, input, language)}],
                                 purpose="respond", temperature=temperature, max_tokens=max_tokens,
                                 node_id=node_id, salt=salt)
