"""The evolver: sends an operation's prompt and pulls the evolved instruction out of free-form output.

Models wrap the instruction in headers (`#Rewritten Prompt#:`, `#Created Prompt#:`, `#재작성된 프롬프트#:`),
quotes, "Sure, here is ..." preambles and trailing explanations; `parse_evolved` strips those and splits off
an `#Input#:` section.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

from evolab.engine.operations import Template, get_operation
from evolab.llm.client import LLMClient
from evolab.text.replies import read_evolved


def parse_evolved(raw: str) -> tuple[str, str | None]:
    """(instruction, input or None); the instruction is "" when nothing usable was returned
    (evolab.text.replies.read_evolved, measured on tests/data/replies/evolver.jsonl)."""
    return read_evolved(raw)


@dataclass
class Evolution:
    operation: str
    prompt: str
    template: Template
    raw_output: str
    instruction: str
    input: str
    finish_reason: str | None = None  # "length": the reply was cut at max_tokens (the `truncated` rule)


async def evolve(client: LLMClient, instruction: str, input: str, operation: str, *, language: str = "en",
                 rng: random.Random | None = None, temperature: float = 0.7, max_tokens: int = 512,
                 node_id: str | None = None, salt: str = "", template: Template | None = None) -> Evolution:
    """One evolution step. The child keeps the parent's input unless the model wrote a new #Input#.
    `template`: a stored template version to use instead of the shipped file."""
    prompt, template = get_operation(operation).build_prompt(instruction, input, language, rng, template)
    comp = await client.complete([{"role": "user", "content": prompt}], purpose="evolve",
                                 temperature=temperature, max_tokens=max_tokens, node_id=node_id, salt=salt)
    new_instruction, new_input = parse_evolved(comp.text)
    return Evolution(operation, prompt, template, comp.text, new_instruction,
                     input if new_input is None else new_input, comp.finish_reason)
