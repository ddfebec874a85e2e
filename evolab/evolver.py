"""The evolver: sends an operation's prompt and pulls the evolved instruction out of free-form output.

Models wrap the instruction in headers (`#Rewritten Prompt#:`), quotes, "Sure, here is ..." preambles
and trailing explanations; `parse_evolved` strips those and splits off an `#Input#:` section.
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass

from .llm.client import LLMClient
from .operations import Template, get_operation

_HEADER = re.compile(
    r"(?:#+\s*|\*\*\s*)?(?:the\s+)?(?:rewritten|new|created|evolved|revised)\s+(?:prompt|instruction)"
    r"(?:\s*#+)?\s*(?:\*\*)?\s*[:：]?\s*(?:\*\*)?\s*"
    r"|#?\s*(?:다시\s*쓴|재작성된|새로\s*만든|새)\s*(?:프롬프트|지시문)\s*#?\s*[:：]?\s*",
    re.I,
)
_PREAMBLE = re.compile(
    r"^\s*(?:sure|certainly|of course|okay|ok|here(?:'s| is| are)|below is|absolutely)\b[^\n]*?"
    r"(?::\s*(?:\n|$)|\n)"
    r"|^\s*(?:물론|네|좋습니다|다음은|여기)[^\n]*?(?::\s*(?:\n|$)|\n)",
    re.I,
)
_TRAILER = re.compile(
    r"\n\s*(?:\*\*)?(?:explanation|note|notes|rationale|this (?:rewritten|new|revised) (?:prompt|instruction)|"
    r"in this (?:rewritten|revised) (?:prompt|version)|changes made|설명|참고|이 (?:지시문|프롬프트)은)"
    r"\b.*\Z",
    re.I | re.S,
)
_INPUT = re.compile(r"\n?\s*#\s*Input\s*#\s*[:：]?\s*", re.I)
_QUOTES = [('"', '"'), ("'", "'"), ("“", "”"), ("‘", "’"), ("「", "」"), ("«", "»"), ("`", "`")]


def parse_evolved(raw: str) -> tuple[str, str | None]:
    """(instruction, input or None). The instruction is "" when nothing usable was returned."""
    text = (raw or "").replace("\r\n", "\n").strip()
    # Take what follows the last header: models sometimes echo the given prompt first.
    headers = list(_HEADER.finditer(text))
    if headers:
        last = headers[-1]
        text = text[last.end():].strip() or text[:last.start()].strip()
    text = _PREAMBLE.sub("", text, count=1).strip()
    text = _TRAILER.sub("", text).strip()
    text = re.sub(r"^#\s*given prompt\s*#\s*[:：]?", "", text, flags=re.I).strip()
    text = _strip_quotes(text)
    input_text: str | None = None
    parts = _INPUT.split(text, maxsplit=1)
    if len(parts) == 2:
        text, input_text = parts[0].strip(), parts[1].strip()
    return _strip_quotes(text), input_text


def _strip_quotes(text: str) -> str:
    for left, right in _QUOTES:
        if len(text) >= 2 and text.startswith(left) and text.endswith(right) and text.count(left) <= 2:
            return text[len(left):-len(right)].strip()
    return text


@dataclass
class Evolution:
    operation: str
    prompt: str
    template: Template
    raw_output: str
    instruction: str
    input: str


async def evolve(client: LLMClient, instruction: str, input: str, operation: str, *, language: str = "en",
                 rng: random.Random | None = None, temperature: float = 0.7, max_tokens: int = 512,
                 node_id: str | None = None, salt: str = "") -> Evolution:
    """One evolution step. The child keeps the parent's input unless the model wrote a new #Input#."""
    prompt, template = get_operation(operation).build_prompt(instruction, input, language, rng)
    comp = await client.complete([{"role": "user", "content": prompt}], purpose="evolve",
                                 temperature=temperature, max_tokens=max_tokens, node_id=node_id, salt=salt)
    new_instruction, new_input = parse_evolved(comp.text)
    return Evolution(operation, prompt, template, comp.text, new_instruction,
                     input if new_input is None else new_input)
