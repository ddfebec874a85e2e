"""The eliminator: the four failure rules of Evol-Instruct (WizardLM, section 3.3, "Elimination
Evolving") plus the novelty and quality filters. Each rule is a function returning a Verdict.

The rules form a cascade (`CASCADE`): small rule objects in order, cheap ones first. Each declares its id,
the languages it supports, whether it calls the LLM, and what it needs (the instruction, the answer, or the
scores); the pipeline walks the cascade, answering and scoring only when a rule needs it, and stops at the
first failure. Adding a rule is one class and one `register_rule(...)` line. Every verdict is stored.
"""
from __future__ import annotations

import difflib
import re
import unicodedata
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Awaitable, Callable, ClassVar

from evolab.embeddings.novelty import max_rouge_l
from evolab.engine.operations import load_template
from evolab.llm.base import LLMError
from evolab.llm.client import LLMClient
from evolab.text.reading import EQUAL, ask
from evolab.text.refusal import is_refusal
from evolab.text.replies import read_equal

if TYPE_CHECKING:
    from evolab.schema import Node, RunConfig, Score


@dataclass
class Verdict:
    rule: str
    passed: bool
    detail: str = ""
    judge: str = "heuristic"
    # The rule's judge gave a reply no one can read: neither pass nor fail; the step fails as `unreadable`.
    unreadable: bool = False


# -- word lists per language ------------------------------------------------------------------------
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
    return language if language in LEAK_WORDS else "en"


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
    """Paper rule 2: the answer refuses (an apology with inability, "I can't help with that",
    "답변을 드리기 어렵습니다") where it opens a short answer (< 80 words) or makes up most of it.
    An ordinary sentence that contains "cannot" or "할 수 없" is not a refusal (evolab.text.refusal)."""

    refused, detail = is_refusal(response, _lang(language), max_words=max_words)
    return Verdict("refusal", not refused, detail)


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
    """True for Equal, False for Not Equal, None when the reply says neither (evolab.text.replies.read_equal)."""

    return read_equal(text)


INPUT_LABEL = {"en": "Input:", "ko": "입력:"}


def with_input(instruction: str, input: str, language: str = "en") -> str:
    """An instruction as the equality judge sees it: with its input, since complicate_input changes the input."""
    if not (input or "").strip():
        return instruction
    return f"{instruction}\n\n{INPUT_LABEL.get(language, INPUT_LABEL['en'])}\n{input}"


async def judge_equal(client: LLMClient, parent_instruction: str, child_instruction: str, *,
                      language: str = "en", max_tokens: int = 16, node_id: str | None = None,
                      parent_input: str = "", child_input: str = "", temperature: float = 0.0) -> Verdict:
    """Paper rule 1: ask the model whether the two instructions (with their inputs) are equal."""

    prompt = load_template("equal", language).render(first=with_input(parent_instruction, parent_input, language),
                                                      second=with_input(child_instruction, child_input, language))
    try:
        reading = await ask(client, [{"role": "user", "content": prompt}], EQUAL, purpose="equal",
                            temperature=temperature, max_tokens=max_tokens, node_id=node_id, language=language)
    except LLMError as e:
        # The judge is a filter: if it cannot answer, keep the child and say so.
        return Verdict("no_new_information", True, f"equality judge failed: {e}", judge=client.model)
    if reading.value is None:
        # Neither Equal nor Not Equal: never guessed. The step fails as `unreadable`.
        return Verdict("no_new_information", False, f"equality judge: {reading.describe(120)}", judge=client.model,
                       unreadable=True)
    reply = " ".join(reading.reply.split())[:80]
    if reading.value is True:
        return Verdict("no_new_information", False, f"judge says Equal: {reply!r}", judge=client.model)
    return Verdict("no_new_information", True, f"judge says Not Equal ({reading.how})", judge=client.model)


# -- novelty and quality filters -------------------------------------------------------------------------
def check_duplicate(instruction: str, others: list[str], *, rouge_l_max: float = 0.7) -> Verdict:
    """Self-Instruct's filter: drop an instruction whose ROUGE-L with any kept one exceeds 0.7."""

    score = max_rouge_l(instruction, others) if others else 0.0
    if score > rouge_l_max:
        return Verdict("duplicate", False, f"ROUGE-L {score:.2f} with a kept instruction")
    if score <= 0:  # through LSH, no pool text close enough to be compared: 0 is a bound, not a measure
        return Verdict("duplicate", True, f"ROUGE-L at most {rouge_l_max:.2f} with every kept instruction")
    return Verdict("duplicate", True, f"max ROUGE-L {score:.2f}")


def check_quality(score: float | None, *, minimum: float = 4.5, why_missing: str = "") -> Verdict:
    """AlpaGasus filter: keep answers rated at least `minimum` (of 5). With the filter on, a missing or
    unreadable score fails too: an answer nobody could rate is not one rated good."""
    if score is None:
        return Verdict("low_quality", False, f"no readable quality score{': ' + why_missing if why_missing else ''}")
    if score < minimum:
        return Verdict("low_quality", False, f"quality {score:g} < {minimum:g}")
    return Verdict("low_quality", True, f"quality {score:g}")


# -- the cascade ---------------------------------------------------------------------------------------
INSTRUCTION, RESPONSE, SCORES = "instruction", "response", "scores"


@dataclass
class StepContext:
    """What a rule may look at: the parent, the child (its answer once a rule needed one), the run's config,
    the client (for rules that call the LLM), the scores once computed, and the novelty pool."""

    parent: "Node"
    node: "Node"
    config: "RunConfig"
    client: LLMClient | None = None
    scores: list["Score"] = field(default_factory=list)
    # Instructions a child must be novel against (seeds and other lineages' kept nodes, see the pipeline).
    novelty_pool: Callable[[], Awaitable[list[str]]] | None = None
    finish_reason: str | None = None  # why the evolver's reply ended ("length": cut at max_tokens)


class Rule:
    """One elimination rule. Subclasses set the class attributes and implement `check`."""

    id: ClassVar[str] = ""
    languages: ClassVar[tuple[str, ...]] = ("*",)  # "*": any language
    uses_llm: ClassVar[bool] = False
    needs: ClassVar[str] = INSTRUCTION  # INSTRUCTION, RESPONSE (the answer) or SCORES

    def enabled(self, config: "RunConfig") -> bool:
        """On unless switched off (`--rule-off ID`, or the RuleConfig switch of the same name)."""
        return self.id not in config.rules.off and getattr(config.rules, self.id, True) is not False

    def applies_to(self, language: str) -> bool:
        return "*" in self.languages or language in self.languages

    async def check(self, ctx: StepContext) -> Verdict:
        raise NotImplementedError


class Truncated(Rule):
    """The evolver's reply was cut at max_tokens (finish_reason "length") inside the instruction (or its input):
    not a whole instruction. A reply cut in a trailing note, after the instruction ended, is whole."""

    id = "truncated"

    async def check(self, ctx: StepContext) -> Verdict:
        if ctx.finish_reason != "length":
            return Verdict(self.id, True, f"the reply ended on its own ({ctx.finish_reason or 'no finish reason'})")
        last = (ctx.node.input if ctx.node.input and ctx.node.input != ctx.parent.input else ctx.node.instruction)
        raw = " ".join((ctx.node.raw_output or "").split())
        tail = " ".join((last or "").split())[-40:]
        if tail and not raw.endswith(tail):
            return Verdict(self.id, True, "cut at max_tokens after the instruction ended (in a note that was dropped)")
        return Verdict(self.id, False, f"the evolver's reply was cut at max_tokens ({ctx.config.max_tokens_evolve}) "
                                       "inside the instruction; raise --max-tokens-evolve")


class Unchanged(Rule):
    """Paper rule 1, cheap part: empty, identical or near-identical (instruction and input) to the parent."""

    id = "no_new_information"

    async def check(self, ctx: StepContext) -> Verdict:
        return check_unchanged(ctx.parent.instruction, ctx.node.instruction,
                               near_identical_ratio=ctx.config.rules.near_identical_ratio,
                               parent_input=ctx.parent.input, child_input=ctx.node.input)


class PromptLeak(Rule):
    """Paper rule 4: the instruction copies words of the evolving prompt."""

    id = "prompt_leak"
    languages = ("en", "ko")

    async def check(self, ctx: StepContext) -> Verdict:
        return check_prompt_leak(ctx.node.instruction, ctx.node.language)


class Refusal(Rule):
    """Paper rule 2: the answer is a refusal (short, or mostly refusal)."""

    id = "refusal"
    languages = ("en", "ko")
    needs = RESPONSE

    async def check(self, ctx: StepContext) -> Verdict:
        return check_refusal(ctx.node.response or "", ctx.node.language, max_words=ctx.config.rules.refusal_max_words)


class EmptyResponse(Rule):
    """Paper rule 3: the answer holds only punctuation and stop words."""

    id = "empty_response"
    languages = ("en", "ko")
    needs = RESPONSE

    async def check(self, ctx: StepContext) -> Verdict:
        return check_empty_response(ctx.node.response or "", ctx.node.language)


class EqualityJudge(Rule):
    """Paper rule 1, the LLM part: the model says the two instructions (with inputs) are Equal."""

    id = "no_new_information"
    uses_llm = True

    def enabled(self, config: "RunConfig") -> bool:
        return super().enabled(config) and config.rules.use_equal_judge and "equal_judge" not in config.rules.off

    async def check(self, ctx: StepContext) -> Verdict:
        assert ctx.client is not None
        return await judge_equal(ctx.client, ctx.parent.instruction, ctx.node.instruction,
                                 language=ctx.node.language, max_tokens=ctx.config.max_tokens_judge, node_id=ctx.node.id,
                                 parent_input=ctx.parent.input, child_input=ctx.node.input,
                                 temperature=ctx.config.temperature_judge)


class Duplicate(Rule):
    """Self-Instruct's novelty filter (ROUGE-L > 0.7) against the seeds and the kept nodes of other lineages
    as they stood when the round began; never against the child's own ancestors."""

    id = "duplicate"

    def enabled(self, config: "RunConfig") -> bool:
        return config.rules.duplicate and self.id not in config.rules.off

    async def check(self, ctx: StepContext) -> Verdict:
        others = await ctx.novelty_pool() if ctx.novelty_pool else []
        return check_duplicate(ctx.node.instruction, others, rouge_l_max=ctx.config.rules.rouge_l_max)


class LowQuality(Rule):
    """AlpaGasus's filter: the quality score (0-5) is under the threshold, or missing."""

    id = "low_quality"
    needs = SCORES

    def enabled(self, config: "RunConfig") -> bool:
        return config.rules.quality_filter and self.id not in config.rules.off

    async def check(self, ctx: StepContext) -> Verdict:
        quality = next((s for s in ctx.scores if s.metric == "quality"), None)
        if quality is None:
            return check_quality(None, minimum=ctx.config.rules.quality_min, why_missing="quality was not scored")
        return check_quality(quality.value, minimum=ctx.config.rules.quality_min,
                             why_missing=quality.detail or "")


# Cheap first: instruction checks, then the answer's, then the LLM judge, the novelty filter, and last what
# needs the scores.
CASCADE: list[Rule] = [Truncated(), Unchanged(), PromptLeak(), Refusal(), EmptyResponse(), EqualityJudge(), Duplicate(),
                       LowQuality()]


def register_rule(rule: Rule, *, before: str | None = None) -> Rule:
    """Add a rule to the cascade, cheap first: a rule without LLM calls goes before the first LLM or
    score-based rule, an LLM rule before the score-based ones; or before the first rule with id `before`.
    Returns the rule, so `register_rule(MyRule())` is the one line."""
    if before is not None:
        index = next((i for i, r in enumerate(CASCADE) if r.id == before), len(CASCADE))
    elif rule.needs == SCORES:
        index = len(CASCADE)
    else:
        later = (lambda r: r.needs == SCORES) if rule.uses_llm else (lambda r: r.uses_llm or r.needs == SCORES)
        index = next((i for i, r in enumerate(CASCADE) if later(r)), len(CASCADE))
    CASCADE.insert(index, rule)
    return rule


def unregister_rule(rule: Rule) -> None:
    if rule in CASCADE:
        CASCADE.remove(rule)


def rule_ids() -> list[str]:
    """Every rule id in the cascade, in order, once each."""
    return list(dict.fromkeys(r.id for r in CASCADE))


# Why a step failed or was discarded without a cascade rule saying so.
FAILURE_RULES = (
    "llm_error",  # a call failed after retries
    "unreadable",  # a judge's reply could be read neither as JSON nor as text, even after a stricter retry
    "manual",  # discarded by hand in the step-through view
)


def all_rule_ids() -> tuple[str, ...]:
    """Every id a node's `rule` can hold: the cascade's, then the failures'."""
    return tuple(rule_ids()) + FAILURE_RULES


def describe_cascade() -> list[dict[str, Any]]:
    """The cascade as rows (for the CLI and the app)."""
    return [{"id": r.id, "class": type(r).__name__, "languages": ",".join(r.languages), "uses_llm": r.uses_llm,
             "needs": r.needs, "doc": (type(r).__doc__ or "").strip().split("\n")[0]} for r in CASCADE]
