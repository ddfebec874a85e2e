"""The eliminator: the four failure rules of Evol-Instruct (WizardLM, section 3.3, "Elimination
Evolving") plus the novelty and quality filters. Each rule is a function returning a Verdict.

Cheap checks run first; the LLM equality judge only where they passed. Every verdict is stored.
"""
from __future__ import annotations

import difflib
import re
import unicodedata
from dataclasses import dataclass

from .llm.base import LLMError
from .llm.client import LLMClient
from .operations import load_template


@dataclass
class Verdict:
    rule: str
    passed: bool
    detail: str = ""
    judge: str = "heuristic"


# -- word lists per language ------------------------------------------------------------------------
REFUSAL_PHRASES = {
    "en": ["sorry", "i apologize", "i apologise", "i cannot", "i can't", "i can not", "i'm unable",
           "i am unable", "i am not able", "as an ai", "i'm not able", "i won't be able", "unfortunately, i"],
    "ko": ["죄송", "미안", "사과드", "할 수 없습니다", "할 수 없어요", "드릴 수 없", "도와드릴 수 없", "불가능합니다",
           "AI로서", "인공지능으로서", "답변할 수 없", "답변드릴 수 없"],
}
# The paper's examples ("given prompt", "rewritten prompt", "#Rewritten Prompt#") and their kin.
LEAK_WORDS = {
    "en": ["given prompt", "rewritten prompt", "#rewritten prompt#", "#given prompt#", "created prompt",
           "#created prompt#", "the prompt rewriter", "#input#"],
    "ko": ["주어진 프롬프트", "다시 쓴 프롬프트", "재작성된 프롬프트", "새로 만든 프롬프트", "#given prompt#",
           "#rewritten prompt#"],
}
STOP_WORDS = {
    "en": set("""a about above after again against all am an and any are as at be because been before being
below between both but by can could did do does doing down during each few for from further had has have
having he her here hers herself him himself his how i if in into is it its itself just me more most my myself
no nor not now of off on once only or other our ours ourselves out over own same she should so some such than
that the their theirs them themselves then there these they this those through to too under until up very was
we were what when where which while who whom why will with would you your yours yourself yourselves ok okay
yes sure well oh um uh hmm""".split()),
    "ko": set("""이 그 저 것 수 등 및 는 은 을 를 의 에 가 도 으로 로 와 과 하다 있다 되다 이다 않다 그리고 그러나 하지만
또는 또 즉 및 에서 에게 께 한 할 하는 했다 합니다 입니다 있습니다 네 예 아니요 음 어 아""".split()),
}


def _lang(language: str) -> str:
    return language if language in REFUSAL_PHRASES else "en"


def _normalize(text: str) -> str:
    text = unicodedata.normalize("NFKC", text or "").lower()
    return re.sub(r"\s+", " ", re.sub(r"[^\w\s]", " ", text)).strip()


def count_words(text: str) -> int:
    return len(re.findall(r"\w+", text or ""))


# -- rule 1: no information gain (cheap part) ----------------------------------------------------------
def check_unchanged(parent_instruction: str, child_instruction: str, *, near_identical_ratio: float = 0.95,
                    parent_input: str = "", child_input: str = "") -> Verdict:
    """Paper rule 1, cheap part: an empty or (near-)identical child gains no information."""
    if not _normalize(child_instruction):
        return Verdict("no_new_information", False, "the evolver returned no instruction")
    a = _normalize(parent_instruction + " " + parent_input)
    b = _normalize(child_instruction + " " + child_input)
    if a == b:
        return Verdict("no_new_information", False, "identical to the parent")
    ratio = difflib.SequenceMatcher(None, a, b, autojunk=False).ratio()
    if ratio >= near_identical_ratio:
        return Verdict("no_new_information", False, f"near-identical to the parent (similarity {ratio:.2f})")
    return Verdict("no_new_information", True, f"similarity to parent {ratio:.2f}")


# -- rule 4: words copied from the evolving prompt ----------------------------------------------------
def check_prompt_leak(instruction: str, language: str = "en") -> Verdict:
    """Paper rule 4: the instruction copies words of the evolving prompt (e.g. "#Rewritten Prompt#")."""
    low = unicodedata.normalize("NFKC", instruction or "").lower()
    words = LEAK_WORDS["en"] + (LEAK_WORDS[_lang(language)] if _lang(language) != "en" else [])
    found = [w for w in words if w in low]
    if found:
        return Verdict("prompt_leak", False, f"copies {found[0]!r} from the evolving prompt")
    return Verdict("prompt_leak", True, "no words of the evolving prompt")


# -- rule 2: refusal with a short answer ---------------------------------------------------------------
def check_refusal(response: str, language: str = "en", *, max_words: int = 80) -> Verdict:
    """Paper rule 2: the answer says sorry (or refuses) and is short (< 80 words)."""
    low = unicodedata.normalize("NFKC", response or "").lower()
    phrases = REFUSAL_PHRASES["en"] + (REFUSAL_PHRASES[_lang(language)] if _lang(language) != "en" else [])
    hit = next((p for p in phrases if p.lower() in low), None)
    words = count_words(response)
    if hit and words < max_words:
        return Verdict("refusal", False, f"{hit!r} in a {words}-word answer")
    return Verdict("refusal", True, f"{words} words" + (f", contains {hit!r} but long" if hit else ""))


# -- rule 3: only punctuation and stop words -----------------------------------------------------------
def check_empty_response(response: str, language: str = "en") -> Verdict:
    """Paper rule 3: the answer holds only punctuation and stop words."""
    stop = STOP_WORDS["en"] | STOP_WORDS[_lang(language)]
    words = re.findall(r"\w+", unicodedata.normalize("NFKC", response or "").lower())
    content = [w for w in words if w not in stop]  # a number counts as content ("42" answers a sum)
    if not content:
        return Verdict("empty_response", False, "only punctuation and stop words" if response.strip() else "empty")
    return Verdict("empty_response", True, f"{len(content)} content words")


# -- rule 1: the LLM equality judge ---------------------------------------------------------------------
def parse_equal(text: str) -> bool | None:
    """True for Equal, False for Not Equal, None when the reply says neither."""
    low = (text or "").strip().lower()
    if re.search(r"\bnot\s+equal\b|\bunequal\b|\bnot the same\b|같지\s*않|다릅니다|다르다", low):
        return False
    if re.search(r"\bequal\b|\bthe same\b|같습니다|같다|동일", low):
        return True
    return None


async def judge_equal(client: LLMClient, parent_instruction: str, child_instruction: str, *,
                      language: str = "en", max_tokens: int = 16, node_id: str | None = None) -> Verdict:
    """Paper rule 1: ask the model whether the two instructions are equal (no information gain)."""
    prompt = load_template("equal", language).render(first=parent_instruction, second=child_instruction)
    try:
        comp = await client.complete([{"role": "user", "content": prompt}], purpose="equal", temperature=0.0,
                                     max_tokens=max_tokens, node_id=node_id)
    except LLMError as e:
        # The judge is a filter: if it cannot answer, keep the child and say so.
        return Verdict("no_new_information", True, f"equality judge failed: {e}", judge=client.model)
    equal = parse_equal(comp.text)
    reply = comp.text.strip().replace("\n", " ")[:80]
    if equal is True:
        return Verdict("no_new_information", False, f"judge says Equal: {reply!r}", judge=client.model)
    if equal is None:
        return Verdict("no_new_information", True, f"judge reply unclear, kept: {reply!r}", judge=client.model)
    return Verdict("no_new_information", True, "judge says Not Equal", judge=client.model)


# -- novelty and quality filters -------------------------------------------------------------------------
def check_duplicate(instruction: str, others: list[str], *, rouge_l_max: float = 0.7) -> Verdict:
    """Self-Instruct's filter: drop an instruction whose ROUGE-L with any kept one exceeds 0.7."""
    from .novelty import max_rouge_l

    score = max_rouge_l(instruction, others) if others else 0.0
    if score > rouge_l_max:
        return Verdict("duplicate", False, f"ROUGE-L {score:.2f} with a kept instruction")
    return Verdict("duplicate", True, f"max ROUGE-L {score:.2f}")


def check_quality(score: float | None, *, minimum: float = 4.5) -> Verdict:
    """AlpaGasus filter: keep answers rated at least `minimum` (of 5). A missing score is not a fail."""
    if score is None:
        return Verdict("low_quality", True, "no quality score")
    if score < minimum:
        return Verdict("low_quality", False, f"quality {score:g} < {minimum:g}")
    return Verdict("low_quality", True, f"quality {score:g}")
