"""Two rules a person applies that the paper's four lack, shipped as built-in plugins of the rule registry.

- `language_drift`: the child is not in the language the run asked for (`--language`, or under `--language auto`
  its seed's). English-centric models answer Korean prompts in English often, and a child labelled `ko` that is
  an English paragraph is the first thing a Korean reader throws away. Checked twice, as two stages of one rule:
  the instruction (before anything is answered) and then the answer.
- `off_topic`: the child has left its parent's subject (an in-depth rewrite) or domain (an in-breadth one): the
  cosine of parent and child under the run's embedder falls under a cut calibrated for that model, per language
  and kind of operation, on labelled pairs (evolab/embeddings/calibration.py, `calibrate_off_topic`).

Both are written against the plugin API (`Rule`, `Verdict`, `register_rule`: what `evolab.plugins` exports) and
registered when `evolab.engine` is imported, so every cascade has them; `--rule-off language_drift` or
`--rule-off off_topic` switches one off, and the run's config records the switch (`RuleConfig`).
Measured in docs/rules.md.
"""
from __future__ import annotations

import functools
import os
import re
import threading
from collections import OrderedDict

import numpy as np

from evolab.embeddings import embed
from evolab.embeddings.thresholds import off_topic_thresholds
from evolab.engine.eliminator import RESPONSE, Rule, StepContext, Verdict, register_rule
from evolab.engine.operations import IN_BREADTH, OPERATION_REGISTRY
from evolab.text.language import detect_language

LANGUAGE_NAMES = {"en": "English", "ko": "Korean"}

# -- language_drift -------------------------------------------------------------------------------------------
# Too little prose to tell a language by: a number, a ticker, a formula.
MIN_LETTERS = 8
# Code is written in English whatever the answer's language (identifiers, keywords): it is not the answer's prose.
_FENCED = re.compile(r"```.*?(?:```|\Z)", re.S)
_INLINE_CODE = re.compile(r"`[^`\n]*`")
_URL = re.compile(r"https?://\S+")
# Code outside a fence: a line with no Hangul that opens with an (upper-case) SQL keyword, opens with a keyword of a
# programming language and carries code punctuation or an indent, or ends as code lines do (";", "{", "}", "):").
_CODE_LINE = re.compile(
    r"^(?:[ \t]*(?:SELECT|FROM|WHERE|GROUP BY|ORDER BY|HAVING|JOIN|LEFT JOIN|INSERT|UPDATE|DELETE|CREATE|LIMIT|UNION)\b"
    r"|[ \t]*(?:def|class|import|from|return|for|while|if|elif|else|try|except|print|const|let|var|function|public|"
    r"private|#include)\b(?=[^\n]*[:;(){}=\[])|[ \t]{4,}\S|[^\n]*(?:;|\{|\}|\):)[ \t]*$)[^\n가-힣]*$", re.M)
# An instruction that asks for another language (a translation, "answer in English", "한국어로 쓰세요") makes an
# answer in that language the right one.
ASKS_FOR = {
    "en": re.compile(r"english|영어|영문", re.I),
    "ko": re.compile(r"korean|hangul|한국어|한글|국문|우리말", re.I),
}
_TRANSLATE = re.compile(r"translat|번역|옮겨|옮기", re.I)


def prose(text: str, *, code_lines: bool = False) -> str:
    """The text a language is read from: without code (fenced, inline and, in an answer, lines that are code) and
    links. An instruction keeps its lines: a one-line task may end in its data ("... on {"principal": 1000}")."""
    text = _URL.sub(" ", _INLINE_CODE.sub(" ", _FENCED.sub(" ", text or "")))
    return _CODE_LINE.sub(" ", text) if code_lines else text


def letters(text: str) -> int:
    return sum(map(str.isalpha, text))


# The store keys a verdict row by (node, rule, judge): the answer's stage is told from the instruction's by its judge.
STAGE_JUDGE = {"instruction": "heuristic", "answer": "heuristic (answer)"}


def language_verdict(text: str, wanted: str, what: str, *, instruction: str = "") -> Verdict:
    """Is `text` (the child's `what`: "instruction" or "answer") in `wanted`? evolab.text.language's detector
    (Hangul at least 20% of the letters is Korean, so Korean with English terms, tickers and numbers stays
    Korean), on its prose only. An answer may be in the language its instruction asks for."""
    body, judge = prose(text, code_lines=what == "answer"), STAGE_JUDGE.get(what, "heuristic")
    n = letters(body)
    if n < MIN_LETTERS:
        return Verdict("language_drift", True, f"{what}: too little prose to tell its language ({n} letters)",
                       judge=judge)
    found = detect_language(body)
    if found == wanted:
        return Verdict("language_drift", True, f"{what} in {LANGUAGE_NAMES.get(found, found)}, as the run asks",
                       judge=judge)
    asked = ASKS_FOR.get(found)
    if what == "answer" and asked is not None and (asked.search(instruction) or _TRANSLATE.search(instruction)):
        return Verdict("language_drift", True, f"answer in {LANGUAGE_NAMES.get(found, found)}, which its "
                                                f"instruction asks for (a translation or another language)", judge=judge)
    return Verdict("language_drift", False, f"{what} in {LANGUAGE_NAMES.get(found, found)}, the run asks for "
                                             f"{LANGUAGE_NAMES.get(wanted, wanted)} ({wanted})", judge=judge)


class LanguageDriftInstruction(Rule):
    """The child's instruction is not in the run's language (the seed's under --language auto)."""

    id = "language_drift"
    languages = ("en", "ko")

    async def check(self, ctx: StepContext) -> Verdict:
        return language_verdict(ctx.node.instruction, ctx.node.language, "instruction")


class LanguageDriftAnswer(Rule):
    """The child's answer is not in the run's language, unless its instruction asks for that language."""

    id = "language_drift"
    languages = ("en", "ko")
    needs = RESPONSE

    async def check(self, ctx: StepContext) -> Verdict:
        return language_verdict(ctx.node.response or "", ctx.node.language, "answer",
                                instruction=ctx.node.instruction)


# -- off_topic ------------------------------------------------------------------------------------------------
def run_embedder() -> embed.Embedder:
    """The embedder the off_topic rule compares with: the user's (EVOLAB_EMBED_MODEL / EVOLAB_EMBED_BASE_URL),
    else the packaged multilingual-e5-small: one model for English and Korean runs alike, which loads in well under
    a second without torch (MiniLM, English-only, takes some 8 s to load here)."""
    names = ("EVOLAB_EMBED_MODEL", "EVOLAB_EMBED_BASE_URL", "EVOLAB_EMBED_KEY_ENV")
    return _embedder_for(tuple(os.environ.get(n) or "" for n in names))


@functools.lru_cache(maxsize=4)
def _embedder_for(settings: tuple[str, str, str]) -> embed.Embedder:
    """One embedder per setting, not one per child (an endpoint's client, a model's weights)."""
    return embed.embedder_from_env() if any(settings) else embed.multilingual_embedder()


class OffTopic(Rule):
    """The child left its parent's subject (in-depth) or domain (in-breadth): the cosine of parent and child
    instructions under the run's embedder is under the cut calibrated for the model, language and kind. A model
    with no cut, or a child in another language than its parent (cosines across languages run lower:
    language_drift's to judge), passes, and says why."""

    id = "off_topic"
    languages = ("en", "ko")

    def __init__(self) -> None:
        self._lock = threading.Lock()  # one encode at a time: the embedder is shared by every lineage
        self._vectors: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()  # parents recur: keep the last few

    def _encode(self, embedder: embed.Embedder, texts: list[str]) -> list[np.ndarray]:
        with self._lock:
            missing = [t for t in dict.fromkeys(texts) if (embedder.name, t) not in self._vectors]
            if missing:
                for t, v in zip(missing, embedder.encode(missing)):
                    self._vectors[(embedder.name, t)] = v
            for t in texts:
                self._vectors.move_to_end((embedder.name, t))
            while len(self._vectors) > 4096:
                self._vectors.popitem(last=False)
            return [self._vectors[(embedder.name, t)] for t in texts]

    async def check(self, ctx: StepContext) -> Verdict:
        language = ctx.node.language
        # The instructions only, as calibrated: a child keeps its parent's input (a table, code), which would
        # make a chess question asked over a bond table look on topic.
        parent, child = ctx.parent.instruction, ctx.node.instruction
        child_language = detect_language(prose(ctx.node.instruction))
        if child_language != language:
            return Verdict(self.id, True, f"child in {LANGUAGE_NAMES.get(child_language, child_language)}, its "
                                          f"parent in {LANGUAGE_NAMES.get(language, language)}: cosines across "
                                          "languages are not comparable with the cut (language_drift's to judge)")
        op = OPERATION_REGISTRY.get(ctx.node.operation)
        kind = "in_breadth" if op is not None and op.kind == IN_BREADTH else "in_depth"
        try:
            embedder = run_embedder()
        except Exception as e:  # noqa: BLE001 - a filter that cannot run keeps the child and says so
            return Verdict(self.id, True, f"no embedder to compare with ({type(e).__name__}: {e})"[:300])
        name = embed.threshold_info(embedder).model
        if embed.is_english_only(embedder) and language != "en":
            return Verdict(self.id, True, f"{name} is English-only: no off-topic check in {language}")
        cuts = off_topic_thresholds(name)
        cut = (cuts or {}).get(kind, {}).get(language)
        if cut is None:
            return Verdict(self.id, True, f"no off-topic cut calibrated for {name} in {language} "
                                          "(bench/embeddings.py --off-topic --write-thresholds)")
        try:
            # In the event loop, not a thread: two short texts take e5 about 12 ms here, and batch mode tells "every
            # step waits for the batch" by nothing else running (a step parked on a thread looked like waiting).
            a, b = self._encode(embedder, [parent, child])
        except Exception as e:  # noqa: BLE001 - an embeddings endpoint that fails keeps the child, and says so
            return Verdict(self.id, True, f"embedder failed: {type(e).__name__}: {e}"[:300])
        cosine = float(np.dot(a, b))
        what = "subject" if kind == "in_depth" else "domain"
        if cosine < cut:
            return Verdict(self.id, False, f"left its parent's {what}: cosine {cosine:.3f} < {cut:.4f} "
                                           f"({kind.replace('_', '-')} cut for {language}, {name})")
        return Verdict(self.id, True, f"on its parent's {what}: cosine {cosine:.3f} ≥ {cut:.4f} "
                                      f"({kind.replace('_', '-')}, {language})")


# Cheap first, after the paper's instruction rules: the instruction's language, then the embedding check (a drifted
# child needs no embedding), both before the child is answered (the first answer rule, "refusal"); the answer's
# language after the paper's answer rules, before the LLM judge.
LANGUAGE_DRIFT_INSTRUCTION = register_rule(LanguageDriftInstruction(), before="refusal")
OFF_TOPIC = register_rule(OffTopic(), before="refusal")
LANGUAGE_DRIFT_ANSWER = register_rule(LanguageDriftAnswer())
