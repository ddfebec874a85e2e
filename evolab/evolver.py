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
    r"(?:\s*#+)?\s*(?:\*\*)?(?:\s*\bis\b)?\s*[:：]?\s*(?:\*\*)?\s*"
    r"|#?\s*(?:다시\s*쓴|재작성된|새로\s*만든|새)\s*(?:프롬프트|지시문)\s*#?\s*[:：]?\s*",
    re.I,
)
_PREAMBLE = re.compile(
    r"^\s*(?:sure|certainly|of course|okay|ok|here(?:'s| is| are)|below is|absolutely)\b[^\n]*?"
    r"(?::\s*(?:\n|$)|\n)"
    # Korean: whole words only ("네트워크", "네 가지" and "물론적" are not preambles); "다음은 ..." and
    # "여기 ..." only as a line ending in a colon.
    r"|^\s*(?:(?:물론(?:입니다|이죠|이에요)?|좋습니다|알겠습니다)(?![가-힣])|네(?=\s*[,.!]))[^\n]*?(?::\s*(?:\n|$)|\n)"
    r"|^\s*(?:다음은|여기)[^\n]*?[:：]\s*(?:\n|$)",
    re.I,
)
_TRAILER = re.compile(
    # "Explanation:" / "Note:" (with the colon: "Note that the answer must rhyme." is part of the instruction).
    r"\n\s*(?:\*\*)?(?:(?:explanation|notes?|rationale|changes made|설명|참고)(?:\s*\*\*)?\s*[:：]|"
    r"(?:this (?:rewritten|new|revised) (?:prompt|instruction)|in this (?:rewritten|revised) (?:prompt|version)|"
    r"이 (?:지시문|프롬프트)은)\b).*\Z",
    re.I | re.S,
)
_INPUT = re.compile(r"\n?\s*#\s*Input\s*#\s*[:：]?\s*", re.I)
_QUOTES = [('"', '"'), ("'", "'"), ("“", "”"), ("‘", "’"), ("「", "」"), ("«", "»"), ("`", "`")]


def parse_evolved(raw: str) -> tuple[str, str | None]:
    """(instruction, input or None). The instruction is "" when nothing usable was returned."""
    text = (raw or "").replace("\r\n", "\n").strip()
    # Take what follows the last header: models sometimes echo the given prompt first. Nothing after it:
    # the last non-empty piece between headers (never a piece that still holds a header).
    headers = [m for m in _HEADER.finditer(text) if _is_header(text, m)]
    if headers:
        cuts = [0] + [i for m in headers for i in (m.start(), m.end())] + [len(text)]
        pieces = [text[cuts[i]:cuts[i + 1]].strip() for i in range(0, len(cuts), 2)]
        text = next((p for p in reversed(pieces) if p), "")
    text = _PREAMBLE.sub("", text, count=1).strip()
    text = _TRAILER.sub("", text).strip()
    text = re.sub(r"^#\s*given prompt\s*#\s*[:：]?", "", text, flags=re.I).strip()
    text = _strip_quotes(text)
    input_text: str | None = None
    parts = _INPUT.split(text, maxsplit=1)
    if len(parts) == 2:
        text, input_text = parts[0].strip(), parts[1].strip()
    return _strip_quotes(text), input_text


def _is_header(text: str, m: re.Match) -> bool:
    """A header is marked (`#`, `**` or a colon) or stands on a line of its own; "a new instruction set"
    or "this rewritten prompt adds ..." inside a sentence is not one."""
    if any(c in m.group(0) for c in "#*:："):
        return True
    starts_line = m.start() == 0 or text[m.start() - 1] == "\n"
    ends_line = m.end() == len(text) or "\n" in m.group(0)
    return starts_line and ends_line


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
