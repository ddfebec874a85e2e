"""How complex an instruction looks, measured without an LLM (English and Korean).

Cheap, deterministic counts that track what the in-depth operations add: more words, more
constraints ("at least 3", "반드시"), more questions, more reasoning demands ("step by step",
"단계별로"), a bigger input. They are proxies, not a judgement: compare them across rounds and
operations, next to the LLM's difficulty score.

`measure(instruction, input, language)` returns the raw numbers; `complexity_scores(node)` turns them
into stored `Score` rows (judge "heuristic", metrics `cx_*`), which the pipeline writes for every node.

cx_index = log2(1 + tokens) + constraints + reasoning_cues + 0.5 * questions + log2(1 + input_chars / 100)
(length counts logarithmically so that a long but plain instruction does not outrank a short one
with three constraints).
"""
from __future__ import annotations

import math
import re

from evolab.llm.pricing import count_tokens
from evolab.schema import Node, Score
from evolab.text.language import detect_language

JUDGE = "heuristic"
METRICS = ("cx_tokens", "cx_words", "cx_constraints", "cx_questions", "cx_reasoning_cues", "cx_input_chars",
           "cx_index")


def _words(*patterns: str) -> re.Pattern[str]:
    """English cue words as whole words, case-insensitive."""
    return re.compile(r"\b(?:" + "|".join(patterns) + r")\b", re.IGNORECASE)


_NUM = r"(?:\d+|one|two|three|four|five|six|seven|eight|nine|ten|a\s+single)"
_UNIT = (r"(?:words?|sentences?|paragraphs?|items?|bullet\s+points?|points?|lines?|examples?|steps?|characters?"
         r"|pages?|sections?|tables?|questions?)")
_QUANT = (r"(?:at\s+least|at\s+most|no\s+more\s+than|no\s+less\s+than|no\s+fewer\s+than|not\s+exceed(?:ing)?"
          r"|fewer\s+than|less\s+than|more\s+than|up\s+to|within|exactly|maximum\s+of|minimum\s+of)")
# A quantity with its quantifier ("no more than 100 words") is one constraint, not two.
CONSTRAINT_CUES_EN = _words(
    rf"{_QUANT}(?:\s+{_NUM}\s+{_UNIT})?", rf"under\s+\d+(?:\s+{_UNIT})?", rf"{_NUM}\s+{_UNIT}",
    r"must(?:\s+not)?", r"should(?:\s+not)?", r"shall", r"need(?:s)?\s+to", r"ha(?:ve|s)\s+to", r"required?",
    r"requires", r"ensure", r"make\s+sure", r"only", r"without", r"include[sd]?", r"including",
    r"exclude[sd]?", r"excluding", r"do\s+not", r"don't", r"avoid(?:ing)?", r"never", r"always",
    r"limit(?:ed)?\s+to", r"maximum", r"minimum",
    r"in\s+(?:the\s+)?(?:form|format|style)\s+of", r"(?:use|using)\s+(?:a|an|the)?\s*(?:table|list|bullet)",
)
# Korean: particles and endings are matched inside words; "만" only word-final ("세 문장만").
CONSTRAINT_CUES_KO = re.compile(
    r"\d+\s*(?:개|문장|단어|줄|단락|문단|가지|자|쪽)(?:\s*(?:이상|이하|미만|초과|이내))?|"
    r"반드시|꼭|필수|해야|하여야|되어야|돼야|이상(?![한적하])|이하|미만|초과|이내|넘지|넘기지|포함|제외|정확히|없이|"
    r"금지|하지\s*마|하지\s*말|않도록|말\s*것|제한|최대|최소|(?<=[가-힣])만(?=[\s,.!?]|$)"
)
REASONING_CUES_EN = _words(
    r"step[\s-]by[\s-]step", r"explain\s+(?:why|how)", r"explain", r"why", r"justify(?:ing)?",
    r"justification", r"reason(?:ing|s)?", r"compare", r"comparing", r"comparison", r"contrast",
    r"analy[sz]e", r"analysis", r"evaluate", r"assess", r"derive", r"prove", r"demonstrate",
    r"trade-?offs?", r"pros\s+and\s+cons", r"advantages\s+and\s+disadvantages", r"implications?",
    r"consequences?", r"infer", r"deduce", r"multi-?step", r"show\s+your\s+work",
)
REASONING_CUES_KO = re.compile(
    r"단계별|단계적|차근차근|이유|왜|근거|비교|대조|설명|분석|평가|추론|논리|증명|도출|장단점|장점과\s*단점|"
    r"함의|결과를\s*예측|입증"
)
FIRST_THEN_EN = re.compile(r"\bfirst\b.*?\b(?:then|next|after\s+that|finally)\b", re.IGNORECASE | re.S)
FIRST_THEN_KO = re.compile(r"먼저.*?(?:그\s*다음|다음으로|그리고\s*나서|마지막으로|이어서)", re.S)
QUESTION_MARKS = re.compile(r"[?？]")
# Korean questions sometimes end without "?": "...무엇인가요." / "...할까요"
QUESTION_ENDINGS_KO = re.compile(r"(?:나요|까요|니까|습니까|인가요|는가|을까|ㄹ까|는지요)(?=[\s.!]*$|[\s.!]*\n)",
                                 re.M)
_HANGUL = re.compile(r"[가-힣]")


def measure(instruction: str, input: str = "", language: str = "en") -> dict[str, float]:
    """The complexity counts of one instruction (and its input).

    Keys: tokens, words, constraints, questions, reasoning_cues, input_chars, index.
    `language` "en", "ko" or "auto"; Korean text is also searched for English cues (code, terms).
    """
    instruction = instruction or ""
    input = input or ""
    lang = (language or "auto").lower()
    if lang not in ("en", "ko"):
        lang = detect_language(instruction)
    text = instruction
    constraints = len(CONSTRAINT_CUES_EN.findall(text))
    reasoning = len(REASONING_CUES_EN.findall(text)) + (1 if FIRST_THEN_EN.search(text) else 0)
    questions = len(QUESTION_MARKS.findall(text))
    if lang == "ko" or _HANGUL.search(text):
        constraints += len(CONSTRAINT_CUES_KO.findall(text))
        reasoning += len(REASONING_CUES_KO.findall(text)) + (1 if FIRST_THEN_KO.search(text) else 0)
        questions += len(QUESTION_ENDINGS_KO.findall(text))
    tokens = count_tokens(instruction) if instruction else 0  # LLM tokens, so English and Korean compare
    values = {
        "tokens": float(tokens),
        "words": float(len(instruction.split())),
        "constraints": float(constraints),
        "questions": float(questions),
        "reasoning_cues": float(reasoning),
        "input_chars": float(len(input)),
    }
    values["index"] = complexity_index(values)
    return values


def complexity_index(values: dict[str, float]) -> float:
    """log2(1 + tokens) + constraints + reasoning_cues + 0.5 * questions + log2(1 + input_chars / 100)."""
    return (math.log2(1 + values["tokens"]) + values["constraints"] + values["reasoning_cues"]
            + 0.5 * values["questions"] + math.log2(1 + values["input_chars"] / 100))


def complexity_scores(node: Node) -> list[Score]:
    """The `cx_*` scores of a node (judge "heuristic"): cx_tokens, cx_words, cx_constraints,
    cx_questions, cx_reasoning_cues, cx_input_chars, cx_index."""
    values = measure(node.instruction, node.input or "", node.language or "auto")
    return [Score(node_id=node.id, metric=f"cx_{k}", value=float(v), judge=JUDGE) for k, v in values.items()]
