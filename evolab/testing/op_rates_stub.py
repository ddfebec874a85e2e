"""A scripted model whose evolution operations succeed at different hidden rates (tests and bench/adaptive.py).

`OperationRates({"constraints": 0.8, "breadth": 0.1}, seed=0)` is a handler for `FakeBackend(handler=...)` or
`StubServer(handler=...)`. It tells the operation of an evolving prompt from the shipped template it starts
with (English and Korean) and, with the operation's hidden success rate, writes a harder child: the parent plus
one more requirement, which the difficulty judge scores one point higher. Otherwise the child fails in one of
three ways, picked evenly: it leaks the evolving prompt's words (`prompt_leak`), it copies its parent
(`no_new_information`), or it is reworded with nothing added, so it is kept but not harder (reward 0).

Draws are a hash of (seed, prompt, how often this prompt came before): a parent evolved again with the same
operation in a later round gets a fresh draw, and a run is the same whatever order lineages' calls arrive in
(the same prompt twice at once happens only with fan-out > 1).
"""
from __future__ import annotations

import functools
import hashlib
import re
import threading
from collections import Counter

from evolab.engine.operations import LANGUAGES, get_operation, operation_names
from evolab.llm.fake import given_prompt, scripted_reply

FAILURES = ("leak", "copy", "flat")
# One added requirement per successful step; the difficulty judge counts them.
MARKERS = {"en": "Additionally, require", "ko": "추가 요구 사항:"}
_HANGUL = re.compile(r"[\uac00-\ud7a3]")


@functools.lru_cache(maxsize=None)
def _template_heads() -> list[tuple[str, str]]:
    """(text before the first placeholder, operation), longest first."""
    heads = [(get_operation(op).template(lang).text.split("{")[0], op) for lang in LANGUAGES for op in operation_names()]
    return sorted(heads, key=lambda h: -len(h[0]))


def operation_of(prompt: str) -> str | None:
    """The operation whose shipped template this evolving prompt was rendered from (None: another template)."""
    return next((op for head, op in _template_heads() if head and prompt.startswith(head)), None)


def _uniform(*parts: object) -> float:
    digest = hashlib.sha256("|".join(map(str, parts)).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2 ** 64


class OperationRates:
    """Handler: `rates` maps operations to the chance a step makes a kept, harder child (others: `default`)."""

    def __init__(self, rates: dict[str, float], seed: int = 0, default: float = 0.5):
        self.rates, self.seed, self.default = dict(rates), seed, default
        self._seen: Counter[str] = Counter()
        self._lock = threading.Lock()  # the HTTP stub calls handlers from several threads

    def __call__(self, messages: list[dict], purpose: str) -> str:
        text = messages[-1]["content"]
        if purpose == "evolve":
            return self.evolve(text, given_prompt(messages))
        if purpose == "difficulty":
            return f"Difficulty: {min(10, 3 + sum(text.count(m) for m in MARKERS.values()))}"
        if purpose == "equal":
            return "Not Equal"
        if purpose == "quality":
            return "Score: 4.5\nThe answer is accurate."
        return scripted_reply(messages, purpose)

    def evolve(self, prompt: str, given: str) -> str:
        op = operation_of(prompt)
        rate = self.rates.get(op, self.default) if op else self.default
        header = "#Created Prompt#" if prompt.rstrip().endswith("#Created Prompt#:") else "#Rewritten Prompt#"
        instruction, _, data = given.partition("\n#Input#")
        ko = bool(_HANGUL.search(instruction))
        with self._lock:
            repeat = self._seen[prompt]
            self._seen[prompt] += 1
        u = _uniform(self.seed, prompt, repeat)
        n = sum(instruction.count(m) for m in MARKERS.values()) + 1
        if u < rate:
            extra = (f"{MARKERS['ko']} 단계 {n}의 근거를 밝히세요." if ko
                     else f"{MARKERS['en']} step {n} to be justified.")
            child = f"{instruction} {extra}"
        else:
            failure = FAILURES[int((u - rate) / (1 - rate) * len(FAILURES)) % len(FAILURES)]
            if failure == "leak":
                child = f"Rewritten prompt: {instruction} (the given prompt, made harder)"
            elif failure == "copy":
                child = instruction
            else:  # reworded, nothing added: kept, not harder
                child = (f"다음 요청에 답하세요: {instruction}" if ko else f"Please answer the following: {instruction}")
        return f"{header}:\n{child}" + (f"\n#Input#{data}" if data else "")
