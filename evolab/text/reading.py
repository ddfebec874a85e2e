"""Asking a model for a verdict or a score, and reading its reply the way a person would.

Every judge and scorer goes through `ask`:
1. where the endpoint honours a JSON schema (probed once per endpoint and model, see
   `LLMClient.structured_mode`), the request carries one, and the JSON reply is read;
2. otherwise, or when the JSON is unusable, the free-text reader of that kind reads the reply
   (`evolab.text.replies`, measured on tests/data/replies/ by bench/replies.py);
3. still unreadable: the question is asked once more with a stricter instruction;
4. still unreadable: the reading is `unreadable`. It is never turned into a verdict or a score.

The prompts stay the papers' (WizardLM's equality and difficulty questions, AlpaGasus's rating, Vicuna's
pairwise review); where a prompt asks for a reason, the schema has a short `reason` field before the value,
so the model reasons before it commits to a number.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from evolab.llm.base import Messages
from evolab.llm.client import LLMClient
from evolab.text import replies

JSON = "json"  # read from the structured reply
TEXT = "text"  # read from free text
RETRY = "retry"  # read after the stricter retry
UNREADABLE = "unreadable"

_REASON = {"type": "string", "maxLength": 200, "description": "one or two short sentences"}  # fits small token caps


def _object(properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": list(properties),
            "additionalProperties": False}


@dataclass(frozen=True)
class ReplyKind:
    """One kind of question: its JSON schema, its reader (evolab.text.replies, which reads a JSON reply too), and the
    stricter instruction for the one retry (per language)."""

    name: str
    schema: dict[str, Any]
    read: Callable[[str], Any]
    stricter: dict[str, str]

    def stricter_for(self, language: str) -> str:
        return self.stricter.get(language, self.stricter["en"])


EQUAL = ReplyKind(
    "equal", _object({"verdict": {"type": "string", "enum": ["Equal", "Not Equal"]}}), replies.read_equal,
    {"en": 'Answer with exactly one of these two, and nothing else: "Equal" or "Not Equal".',
     "ko": '다른 말 없이 "Equal" 또는 "Not Equal" 중 하나로만 답하세요.'})
DIFFICULTY = ReplyKind(
    "difficulty", _object({"score": {"type": "integer", "enum": list(range(1, 11))}}),
    lambda text: replies.read_score(text, 1, 10),
    {"en": "Reply with only one whole number from 1 to 10, and nothing else.",
     "ko": "다른 말 없이 1부터 10 사이의 정수 하나만 답하세요."})
QUALITY = ReplyKind(
    "quality", _object({"reason": _REASON, "score": {"type": "number"}}), lambda text: replies.read_score(text, 0, 5),
    {"en": "Reply again: on the first line write only the score, a number from 0 to 5; then one short sentence "
           "of explanation.",
     "ko": "다시 답하세요. 첫 줄에는 0에서 5 사이의 점수만 숫자로 쓰고, 그다음 줄에 짧은 설명을 한 문장으로 쓰세요."})
PAIRWISE = ReplyKind(
    "pairwise", _object({"reason": _REASON, "assistant_1": {"type": "number"}, "assistant_2": {"type": "number"}}),
    replies.read_pair_scores,
    {"en": "Reply again: on the first line write only the two scores, for Assistant 1 and Assistant 2, each from "
           "1 to 10, separated by a space (for example: 7 5).",
     "ko": "다시 답하세요. 첫 줄에는 어시스턴트 1과 어시스턴트 2의 점수(각각 1~10)만 공백으로 구분해 쓰세요 (예: 7 5)."})

# Template tuning (evolab/audit/tuning.py): revised templates, each with the reason for the change before it.
TEMPLATE_CANDIDATES = ReplyKind(
    "template_candidates",
    _object({"candidates": {"type": "array", "items": _object({
        "rationale": {"type": "string", "description": "the failure it addresses and how, in one or two sentences"},
        "template": {"type": "string", "description": "the whole revised template, every placeholder kept"}})}}),
    replies.read_template_candidates,
    {"en": 'Reply again with only a JSON object of this shape, and nothing else: {"candidates": [{"rationale": '
           '"...", "template": "..."}]}. Keep every placeholder in curly braces exactly as it is.',
     "ko": '다른 말 없이 다음 형태의 JSON 객체만 다시 답하세요: {"candidates": [{"rationale": "...", "template": '
           '"..."}]}. 중괄호 안의 자리표시자는 모두 그대로 두세요.'})

KINDS = {k.name: k for k in (EQUAL, DIFFICULTY, QUALITY, PAIRWISE, TEMPLATE_CANDIDATES)}

NEW_SKILL = "other"  # the tag schema's enum value for "none of the set's skills": then new_skill names one


def tag_kind(skills: list[str]) -> ReplyKind:
    """A seed's tags (evolab.seeds.craft): the skill from the set's own list (an enum; NEW_SKILL plus `new_skill`
    proposes another), or any skill when the set has none yet, and the difficulty 1-10 of the paper's question."""
    skill = {"type": "string", "enum": [*skills, NEW_SKILL]} if skills else {"type": "string", "maxLength": 60}
    schema = _object({"skill": skill, "new_skill": {"type": "string", "maxLength": 60,
                                                    "description": f'empty unless skill is "{NEW_SKILL}"'},
                      "difficulty": {"type": "integer", "enum": list(range(1, 11))}})
    return ReplyKind("tag", schema, lambda text: replies.read_tag(text, skills),
                     {"en": "Reply again with exactly two lines and nothing else:\nSkill: <skill>\nDifficulty: <a whole "
                            "number from 1 to 10>",
                      "ko": "다른 말 없이 정확히 두 줄로 다시 답하세요:\n스킬: <스킬>\n난이도: <1부터 10 사이의 정수>"})


@dataclass
class Reading:
    """What was read from a model: the value (None when unreadable), how it was read, the reply as sent
    (the last one, after a retry), and the model's reason when the JSON gave one."""

    value: Any
    how: str
    reply: str
    reason: str | None = None

    @property
    def readable(self) -> bool:
        return self.value is not None

    def describe(self, limit: int = 200) -> str:
        """A short detail for the store: how it was read, and the reply when it could not be."""
        shown = " ".join(self.reply.split())[:limit]
        if not self.readable:
            return f"unreadable reply (asked twice): {shown!r}"
        return f"[{self.how}] {self.reason or shown}"[:limit + 20]


def read(kind: ReplyKind, text: str, structured: bool) -> tuple[Any, str, str | None]:
    """(value or None, how, reason) from one reply. The reader takes JSON and free text alike; "json" says the
    value came from the JSON object a structured request asked for."""
    value = kind.read(text or "")
    data = replies.json_object(text) if structured else None
    if value is None or data is None:
        return value, TEXT, None
    reason = data.get("reason")
    return value, JSON, reason.strip() if isinstance(reason, str) else None


async def ask(client: LLMClient, messages: Messages, kind: ReplyKind, *, purpose: str, temperature: float = 0.0,
              max_tokens: int = 256, node_id: str | None = None, language: str = "en", salt: str = "") -> Reading:
    """Ask, read, retry once with a stricter instruction; LLMError and BudgetExceeded propagate."""
    fmt = await client.response_format(kind.name, kind.schema)
    comp = await client.complete(messages, purpose=purpose, temperature=temperature, max_tokens=max_tokens,
                                 node_id=node_id, salt=salt, response_format=fmt)
    value, how, reason = read(kind, comp.text, fmt is not None)
    if value is not None:
        return Reading(value, how, comp.text, reason)
    again = messages + [{"role": "assistant", "content": comp.text or ""},
                        {"role": "user", "content": kind.stricter_for(language)}]
    comp = await client.complete(again, purpose=purpose, temperature=temperature, max_tokens=max_tokens,
                                 node_id=node_id, salt=salt, response_format=fmt)
    value, how, reason = read(kind, comp.text, fmt is not None)
    if value is not None:
        return Reading(value, RETRY, comp.text, reason)
    return Reading(None, UNREADABLE, comp.text)
