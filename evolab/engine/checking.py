"""Checked answers: self-consistency (Wang et al. 2023, arXiv:2203.11171) as a cheap signal that an answer is
correct, for items whose answer is a number (finance calculations, word problems), English and Korean.

An item is checked in three steps:
1. `detect_checkable(instruction, answer)`: does the instruction ask for a number (calculate, how much, NPV,
   이자, 얼마...) and not for an essay, an explanation or code?
2. the item is answered again k times (3 by default) at a temperature above 0 (0.7), with the responder's own
   prompt, purpose "check"; each sample has its own cache key (salt "check|<i>"), so the k samples are k
   requests, and checking again later reuses them instead of paying twice;
3. `extract_final_number` reads the final number of the answer and of each sample, and `compare` marks the
   item `consistent` when the answer's number agrees (within TOLERANCE, relative) with a strict majority of
   the k samples (2 of 3), `inconsistent` otherwise, and `not_checkable` when nothing asked for a number or
   any of the k + 1 numbers could not be read (the reason names which).

Every reading stores the rule that found the number and the text it matched, so a person can audit it.
Nothing from a reply is ever run: numbers are read by the regular expressions below, never eval'd.
"""
from __future__ import annotations

import asyncio
import math
import re
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterable

import pandas as pd

from evolab.engine.responder import response_prompt
from evolab.llm.base import BudgetExceeded, LLMError
from evolab.llm.client import client_for, make_backend
from evolab.stats import too_small, wilson_interval
from evolab.text.language import detect_language

CONSISTENT, INCONSISTENT, NOT_CHECKABLE = "consistent", "inconsistent", "not_checkable"
CHECK_STATUSES = (CONSISTENT, INCONSISTENT, NOT_CHECKABLE)
UNCHECKED = "unchecked"  # export filter value: nodes with no check row
DEFAULT_K = 3
DEFAULT_TEMPERATURE = 0.7
# Two numbers agree when they differ by at most 1% of the larger: answers round differently ($1,234.56 vs
# $1,235; 5.12% vs 5.1%; "약 1,235만 원" vs 12,345,678), while a different calculation is almost always further off.
TOLERANCE = 0.01

# -- numbers --------------------------------------------------------------------------------------------------
_SCALES = {"thousand": 1e3, "k": 1e3, "million": 1e6, "mn": 1e6, "m": 1e6, "billion": 1e9, "bn": 1e9,
           "b": 1e9, "trillion": 1e12, "tn": 1e12}  # keys lower-cased: "M" and "B" count, "m" and "b" are units
_KO_BIG = {"만": 1e4, "억": 1e8, "조": 1e12}
_KO_SMALL = {"천": 1e3, "백": 1e2, "십": 1e1}

# Digits: 1.234,56 (European, only with a decimal part after grouped thousands), 1,234,567.89, 12,5 (a decimal
# comma: a comma followed by one or two digits cannot be a thousands separator), 1234.5, .5
_DIGITS = (r"\d{1,3}(?:\.\d{3})+,\d{1,2}(?![\d,.])"
           r"|\d{1,3}(?:,\d{3})+(?:\.\d+)?(?![\d,])"
           r"|\d+,\d{1,2}(?![\d,])"
           r"|\d+(?:\.\d+)?"
           r"|\.\d+")
_KO_UNIT = r"(?:조|억|만|천|백)"
_NUMBER = re.compile(
    r"(?<![A-Za-z_0-9])(?<!\d[.,])"  # a whole number, not inside a word ("point42", "H2O", "Q3")
    r"(?P<paren>\()?"
    r"(?P<sign1>[-−–](?=\s?[$₩€£¥\d.])\s?)?"
    r"(?P<cur>(?:US\$|\$|₩|€|£|¥|KRW|USD)\s?)?"
    r"(?P<sign2>[-−](?=[\d.]))?"
    r"(?P<digits>" + _DIGITS + r")"
    # Korean units right after the digits: 1억 2천만, 1,234만, 3.5억 (만큼 / 만에 are words, not units)
    r"(?P<ko>(?:\s?" + _KO_UNIT + r"(?:\s?(?:" + _DIGITS + r")?\s?" + _KO_UNIT + r")*)(?!큼|약|일|에))?"
    r"(?P<scale>\s?(?:thousand|million|billion|trillion|mn|bn|tn|[kKMB])(?![A-Za-z가-힣]))?"  # not "5m" (metres)
    r"(?P<pct>\s?(?:%|％|percent\b|per cent\b|퍼센트|프로))?"
    r"(?P<cparen>\))?",
)


@dataclass
class Reading:
    """The final number of one answer and how it was found (`rule`, `match`), or why none was (`value` None)."""

    value: float | None
    percent: bool = False
    rule: str = ""
    match: str = ""  # the sentence or line the rule read
    token: str = ""  # the number's own text in it, e.g. "$1,234.56" or "1억 2천만"

    def describe(self) -> str:
        if self.value is None:
            return f"no number ({self.rule})"
        number = f"{format_number(self.value)}{'%' if self.percent else ''}"
        return f"{number} ({self.token!r}) by {self.rule} from {self.match!r}"


def format_number(value: float) -> str:
    return f"{value:,.6g}" if abs(value) < 1e15 else f"{value:.6g}"


def _plain(digits: str) -> float:
    """'1,234.5' / '1.234,5' / '12,5' / '.5' -> float (the patterns in _DIGITS decide which comma is which)."""
    if re.fullmatch(r"\d{1,3}(?:\.\d{3})+,\d{1,2}", digits):
        return float(digits.replace(".", "").replace(",", "."))
    if re.fullmatch(r"\d+,\d{1,2}", digits):
        return float(digits.replace(",", "."))
    return float(digits.replace(",", ""))


def _korean_value(first: float, units: str) -> float:
    """The number `first` followed by Korean units, e.g. (1, '억 2천만') -> 120,000,000; (1234, '만') -> 12,340,000.
    천/백 multiply within a group of four digits; 만/억/조 close the group."""
    total, group, pending = 0.0, 0.0, first
    for number, unit in re.findall(r"(" + _DIGITS + r")?\s?(" + _KO_UNIT + r")", units):
        if number:
            group += pending if pending is not None else 0.0
            pending = _plain(number)
        if unit in _KO_SMALL:
            group += (pending if pending is not None else 1.0) * _KO_SMALL[unit]
        else:
            group += pending if pending is not None else 0.0
            total += (group or 1.0) * _KO_BIG[unit]
            group = 0.0
        pending = None
    return total + group + (pending or 0.0)


def parse_number(m: re.Match[str]) -> tuple[float, bool]:
    """(value, is a percentage) of a _NUMBER match: units and scales applied, sign and brackets read."""
    value = _plain(m.group("digits"))
    if m.group("ko"):
        value = _korean_value(value, m.group("ko"))
    scale = (m.group("scale") or "").strip()
    if scale:
        value *= _SCALES[scale.lower()]
    negative = bool(m.group("sign1") or m.group("sign2")) or bool(m.group("paren") and m.group("cparen"))
    return (-value if negative else value), bool(m.group("pct"))


def _numbers(text: str) -> list[re.Match[str]]:
    """Number matches in `text`, leaving out list markers ('1.' / '2)' opening a line), step labels
    ('Step 2', '단계 2'), and years in dates ('2023년', 'in 2023,')."""
    out = []
    for m in _NUMBER.finditer(text):
        start, token = m.start(), m.group(0).strip()
        before = text[max(0, start - 8):start]
        after = text[m.end():m.end() + 2]
        if re.search(r"(?:^|\n)\s*$", before) and re.match(r"[.)]\s", text[m.end():m.end() + 2] or "") \
                and not m.group("cur") and not m.group("pct"):
            continue  # "1. First..." a list marker
        if re.search(r"(?i)(?:step|단계|case|option|part|year|round)\s*$", before) and not m.group("cur"):
            continue
        if re.fullmatch(r"(?:19|20)\d\d", token) and (after.startswith("년") or re.search(r"(?i)\bin\s*$", before)):
            continue
        out.append(m)
    return out


# -- where the final answer is ---------------------------------------------------------------------------------
_LABEL = re.compile(
    r"(?im)(?:final\s+answer|answer|result|정답|최종\s*답(?:변)?|답|결과|결론)\s*(?:\*\*|__)?\s*[:：=]\s*(?:\*\*|__)?"
    r"(?P<rest>[^\n]*)")
_ANSWER_IS = re.compile(r"(?i)\b(?:the\s+)?(?:final\s+)?answer\s+is\b(?P<rest>[^\n]*)")
_CONCLUSION = re.compile(
    r"(?im)(?:^|(?<=[.!?。]\s)|(?<=\*\*))\s*(?:\*\*)?(?:therefore|thus|hence|so|in\s+conclusion|in\s+summary|overall|"
    r"as\s+a\s+result|따라서|그러므로|그래서|즉|결론적으로|결과적으로|요약하면)\b[ ,:]*(?P<rest>[^\n]*)")
# In an English sentence the answer follows "is / = / equals / comes to"; take the number after the last one.
_COPULA = re.compile(r"(?i)(?:\bis\b|\bare\b|\bwas\b|\bwill\s+be\b|\bbe\b|\bequals?\b|=|≈|\bcomes?\s+to\b|"
                     r"\btotals?\b|\bamounts?\s+to\b|\bof\b)\s*(?:about|approximately|approx\.?|around|roughly|"
                     r"nearly|almost|~|≈)?\s*")
_BOLD = re.compile(r"\*\*(?P<rest>[^*\n]+)\*\*")


def _boxed(text: str) -> list[str]:
    """The contents of every LaTeX \\boxed{...}, nested braces allowed."""
    out = []
    for m in re.finditer(r"\\boxed\s*\{", text):
        depth, i = 1, m.end()
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        out.append(text[m.end():i - 1])
    return out


def _latex_plain(s: str) -> str:
    """\\boxed{\\$1{,}234.56} or \\text{...} as plain text: braces, \\, and \\text dropped."""
    s = re.sub(r"\\(?:text|mathrm|textbf|mathbf)\s*\{([^{}]*)\}", r"\1", s)
    s = s.replace("{,}", ",").replace("\\$", "$").replace("\\%", "%").replace("\\,", "").replace("\\!", "")
    s = re.sub(r"\\(?:approx|sim)", "≈", s)
    return s.replace("{", "").replace("}", "")


def _sentence_number(sentence: str, language: str) -> tuple[re.Match[str] | None, str]:
    """The answer's number in one final sentence: after the last "is"/"=" in English, else the last number
    (Korean puts the answer at the end of the sentence: "…NPV는 약 1,234만 원입니다")."""
    # an aside in brackets ("(approximately $14.0 thousand)", "(적자)") is not the answer; "(1,234)" alone is
    sentence = re.sub(r"\([^()]*[A-Za-z가-힣][^()]*\)", " ", sentence)
    found = _numbers(sentence)
    if not found:
        return None, ""
    if language != "ko":
        copulas = [c.end() for c in _COPULA.finditer(sentence)]
        for end in reversed(copulas):
            after = [m for m in found if m.start() >= end and not sentence[end:m.start()].strip(" *$₩")]
            if after:
                return after[0], "after is/="
    return found[-1], "last number"


def _last_sentence_with_number(text: str) -> str | None:
    parts = [p for p in re.split(r"(?<=[.!?。])\s+|\n+", text) if p.strip()]
    for part in reversed(parts):
        if _numbers(part):
            return part
    return None


def extract_final_number(answer: str, language: str | None = None) -> Reading:
    """The final number of an answer, English or Korean, with the rule that found it. Tried in order:
    `boxed` (the last \\boxed{}), `answer_label` (the last "Answer:", "Final answer:", "정답:", "답:" line),
    `answer_is` ("the answer is ..."), `conclusion` (the last "Therefore/Thus/So ..." or "따라서/즉 ..." sentence),
    `bold` (the last **bold** span with a number), `last_sentence` (the last sentence that has a number).
    Korean units (만/억/조/천/백) are turned into plain numbers: "1억 2천만 원" -> 120,000,000."""

    text = (answer or "").strip()
    if not text:
        return Reading(None, rule="empty answer")
    lang = language or detect_language(text)

    def reading(sentence: str, rule: str) -> Reading | None:
        m, how = _sentence_number(sentence, lang)
        if m is None:
            return None
        value, pct = parse_number(m)
        return Reading(value, pct, f"{rule} ({how})", sentence.strip()[:200], m.group(0).strip())

    for box in reversed(_boxed(text)):
        plain = _latex_plain(box)
        found = _numbers(plain)
        if found:
            value, pct = parse_number(found[-1])
            return Reading(value, pct, "boxed", box.strip()[:200], found[-1].group(0).strip())
    plain = _latex_plain(text) if "\\" in text else text
    for pattern, rule in ((_LABEL, "answer_label"), (_ANSWER_IS, "answer_is"), (_CONCLUSION, "conclusion")):
        for m in reversed(list(pattern.finditer(plain))):
            # the label's own line, up to its sentence's end
            rest = re.split(r"(?<=[.!?。])\s+(?=[A-Z가-힣])", m.group("rest").strip())[0]
            found = reading(rest.replace("**", " "), rule)
            if found is not None:
                found.match = m.group(0).strip()[:200]
                return found
    for m in reversed(list(_BOLD.finditer(plain))):
        found = reading(m.group("rest"), "bold")
        if found is not None:
            return found
    sentence = _last_sentence_with_number(plain.replace("**", " "))
    if sentence is not None:
        found = reading(sentence, "last_sentence")
        if found is not None:
            return found
    return Reading(None, rule="no number in the answer")


# -- what can be checked ---------------------------------------------------------------------------------------
# A question for a number: a calculation verb or question word ...
_ASKS_CALCULATION = re.compile(
    r"(?i)\b(?:calculate|compute|estimate|how\s+(?:much|many|long|far|old)|"
    r"what\s+(?:is|was|will\s+be|would\s+be|are)\s+(?:the\s+|its\s+|their\s+)"
    r"(?:[\w-]+\s+){0,2}?(?:total|value|amount|sum|product|average|mean|median|probability|rate|return|yield|"
    r"cost|price|profit|interest|payment|balance|percentage|number|area|volume|speed|distance|net\s+present)|"
    r"find\s+the|determine\s+the|solve|(?<![\w,] )price\s+(?:a|an|the)\b)\b"
    r"|계산|구하|얼마|몇\s*(?:개|명|원|년|개월|일|시간|분|퍼센트|%|배|살|대|권|마리|번)")
# ... or a finance quantity named in a question that gives numbers ("NPV of cash flows 3,000, 4,000 at 8%").
_NUMERIC_TOPIC = re.compile(
    r"(?i)\b(?:npv|irr|present\s+value|future\s+value|compound(?:ed)?\s+interest|simple\s+interest|"
    r"annual(?:ized)?\s+return|roi|cagr|loan\s+payment|monthly\s+payment|mortgage|annuity|amorti[sz]\w*|"
    r"break[- ]even|percentage|probability)\b"
    r"|이자|수익률|현재\s*가치|미래\s*가치|순현재가치|순현가|대출|상환|납입|원리금|할인율|확률|평균|합계|총액|손익분기")
# Never a number: writing and code tasks, even about a calculation ("write a function that computes NPV").
_WRITING_OR_CODE = re.compile(
    r"(?i)\b(?:essay|poem|story|stories|letter|blog\s+post|article|haiku|lyrics|slogan|"
    r"write\s+(?:a|an|the)?\s*(?:\w+\s+)?(?:function|program|script|class|code|query|sql)|implement|"
    r"code\s+(?:that|to|which)|python|javascript|java|c\+\+|sql|regex|pseudocode|translate)\b"
    r"|에세이|수필|(?<![가-힣])시(?:를|\s*한\s*편)|이야기|소설|편지|코드|함수를?\s*(?:작성|만들)|프로그램|스크립트|파이썬|"
    r"구현|번역")
# Not a number unless a calculation is asked for too ("calculate ... and explain each step" is checkable).
_EXPLANATION = re.compile(
    r"(?i)\b(?:explain|describe|discuss|compare\s+and\s+contrast|pros\s+and\s+cons|summari[sz]e|what\s+is\s+(?:a|an)\b)"
    r"|설명|논하|서술|요약|장단점|무엇인가|무엇입니까")


@dataclass
class Detection:
    checkable: bool
    reason: str


def detect_checkable(instruction: str, answer: str | None = None, input: str = "") -> Detection:
    """Whether the item's answer is a number one can check: the instruction asks for a calculation or a count
    (English or Korean) and is not an essay, explanation, translation or code task; and, when `answer` is given,
    a final number can be read from it. A calculation asked for inside a code task ("write a function that
    computes NPV") is code: not checkable."""
    question = f"{instruction}\n{input or ''}"
    writing = _WRITING_OR_CODE.search(question)
    if writing:
        return Detection(False, f"not a numeric task: {writing.group(0).strip()!r}")
    asks = _ASKS_CALCULATION.search(question)
    if asks is None:
        topic = _NUMERIC_TOPIC.search(question)
        if topic is not None and re.search(r"\d", question):
            asks = topic
    explanation = _EXPLANATION.search(question)
    if explanation and not _ASKS_CALCULATION.search(question):
        return Detection(False, f"not a numeric task: {explanation.group(0).strip()!r}")
    if asks is None:
        return Detection(False, "the instruction asks for no number")
    if answer is not None:
        if "```" in answer and re.search(r"```\s*(?:python|py|js|javascript|java|c\+\+|sql|r)\b", answer, re.I):
            return Detection(False, "the answer is code")
        reading = extract_final_number(answer)
        if reading.value is None:
            return Detection(False, f"no final number in the answer ({reading.rule})")
    return Detection(True, f"asks for a number: {asks.group(0).strip()!r}")


# -- comparing numbers -----------------------------------------------------------------------------------------
def agree(a: Reading, b: Reading, tolerance: float = TOLERANCE) -> bool:
    """Two readings name the same number within `tolerance` (relative to the larger). A percentage and a plain
    number agree when they are the same number (12.5% and 12.5) or the same fraction (12.5% and 0.125)."""
    if a.value is None or b.value is None:
        return False

    def close(x: float, y: float) -> bool:
        return math.isclose(x, y, rel_tol=tolerance, abs_tol=1e-9)

    if close(a.value, b.value):
        return True
    if a.percent != b.percent:
        pct, plain = (a, b) if a.percent else (b, a)
        return close(pct.value / 100.0, plain.value)
    return False


@dataclass
class CheckResult:
    status: str
    reason: str
    answer: Reading | None
    samples: list[Reading]
    agreeing: int | None = None

    def readings(self, sample_texts: list[str] | None = None) -> list[dict[str, Any]]:
        rows = []
        if self.answer is not None:
            rows.append({"source": "answer", **asdict(self.answer)})
        for i, r in enumerate(self.samples):
            row = {"source": f"sample {i + 1}", **asdict(r)}
            if sample_texts is not None and i < len(sample_texts):
                row["text"] = sample_texts[i][-600:]  # the end, where the final answer is
            rows.append(row)
        return rows


def compare(answer: Reading, samples: list[Reading], tolerance: float = TOLERANCE) -> CheckResult:
    """consistent: the answer's number agrees with more than half of the samples (2 of 3); inconsistent
    otherwise; not_checkable when the answer's or any sample's number could not be read (the reason says which)."""
    if answer.value is None:
        return CheckResult(NOT_CHECKABLE, f"answer: {answer.rule}", answer, samples)
    missing = [f"sample {i + 1}" for i, s in enumerate(samples) if s.value is None]
    if missing or not samples:
        why = ", ".join(missing) or "no samples"
        return CheckResult(NOT_CHECKABLE, f"no number read from {why}", answer, samples)
    agreeing = sum(agree(answer, s, tolerance) for s in samples)
    values = ", ".join(format_number(s.value) + ("%" if s.percent else "") for s in samples)  # type: ignore[arg-type]
    described = f"{agreeing} of {len(samples)} samples agree with {format_number(answer.value)}" \
                f"{'%' if answer.percent else ''} (samples: {values})"
    status = CONSISTENT if 2 * agreeing > len(samples) else INCONSISTENT
    return CheckResult(status, described, answer, samples, agreeing)


# -- asking again ----------------------------------------------------------------------------------------------
async def check_node(client: Any, node: Any, *, k: int = DEFAULT_K, temperature: float = DEFAULT_TEMPERATURE,
                     tolerance: float = TOLERANCE, max_tokens: int = 1024, salt: str = "") -> dict[str, Any]:
    """Check one answered node: detect, answer it k more times, compare. Returns the store row (not written).
    Raises the client's LLMError / BudgetExceeded (a failed sample is not a verdict: check it again later)."""

    if k < 1:
        raise ValueError("k must be at least 1.")
    row: dict[str, Any] = {"node_id": node.id, "run_id": node.run_id, "k": k, "temperature": temperature,
                           "tolerance": tolerance, "model": client.model, "created_at": time.time()}
    detection = detect_checkable(node.instruction, node.response, node.input)
    if not detection.checkable:
        answer = extract_final_number(node.response or "", node.language)
        return {**row, "status": NOT_CHECKABLE, "reason": detection.reason,
                "answer_value": answer.value, "readings": [{"source": "answer", **asdict(answer)}]}
    messages = [{"role": "user", "content": response_prompt(node.instruction, node.input, node.language)}]
    # One cache key per sample index: k distinct requests (never one cached reply k times), and a check run
    # again reads the same k samples back from the cache instead of paying for them twice.
    comps = await asyncio.gather(*(client.complete(messages, purpose="check", temperature=temperature,
                                                   max_tokens=max_tokens, node_id=node.id,
                                                   salt=f"{salt}|check|{i}") for i in range(k)))
    texts = [c.text.strip() for c in comps]
    answer = extract_final_number(node.response or "", node.language)
    result = compare(answer, [extract_final_number(t, node.language) for t in texts], tolerance)
    return {**row, "status": result.status, "reason": result.reason, "answer_value": answer.value,
            "agreeing": result.agreeing, "readings": result.readings(texts)}


async def check_in_run(store: Any, client: Any, node: Any, config: Any) -> str | None:
    """`run --check-answers`: check a kept node or an answered seed once (a node checked before is left alone),
    the row queued on the store's writer after the node's own. Returns the status, or None when nothing was
    stored (a sample call failed: `python -m evolab check` tries again). BudgetExceeded goes to the run."""

    if node.status not in ("seed", "kept") or not node.response or store.answer_check_status(node.id) is not None:
        return None
    try:
        row = await check_node(client, node, k=config.check_k, temperature=config.check_temperature,
                               max_tokens=config.max_tokens_respond, salt=str(config.random_seed))
    except BudgetExceeded:
        raise
    except LLMError:
        return None
    store.submit("save_answer_check", row)
    return row["status"]


def checkable_nodes(store: Any, run_id: str, recheck: bool = False) -> list[Any]:
    """The run's answered seeds and kept nodes, leaving out those already checked unless `recheck`."""
    done = set() if recheck else {r["node_id"] for r in store.answer_checks([run_id])}
    return [n for n in store.nodes(run_id) if n.status in ("seed", "kept") and n.response and n.id not in done]


async def check_run(store: Any, client: Any, run_id: str, *, k: int = DEFAULT_K,
                    temperature: float = DEFAULT_TEMPERATURE, tolerance: float = TOLERANCE, max_tokens: int = 1024,
                    recheck: bool = False, salt: str = "",
                    progress: Callable[[dict[str, Any]], None] | None = None) -> dict[str, int]:
    """Check every answered seed and kept node of a run that has no check yet; each row is written as it is
    done. Returns counts by status, plus `failed` (a sample call failed: nothing stored, check again later)."""

    counts = {s: 0 for s in CHECK_STATUSES} | {"failed": 0}

    async def one(node: Any) -> None:
        try:
            row = await check_node(client, node, k=k, temperature=temperature, tolerance=tolerance,
                                   max_tokens=max_tokens, salt=salt)
        except BudgetExceeded:
            raise
        except LLMError:
            counts["failed"] += 1
        else:
            store.save_answer_check(row)
            counts[row["status"]] += 1
        if progress is not None:
            progress(dict(counts))

    results = await asyncio.gather(*(one(n) for n in checkable_nodes(store, run_id, recheck)),
                                   return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException)]
    if errors:
        raise errors[0]
    return counts


# -- figures' data ---------------------------------------------------------------------------------------------
def consistent_share(store: Any, run_ids: Iterable[str]) -> pd.DataFrame:
    """Per run and round, over the answered data set (seeds and kept nodes) that was checked: checked
    (consistent + inconsistent: the items whose numbers could be compared), consistent, inconsistent,
    not_checkable, and share = consistent / checked (NaN when nothing was checked)."""
    cols = ["run_id", "round", "checked", "consistent", "inconsistent", "not_checkable", "share"]
    rows = [r for r in store.answer_checks(list(run_ids)) if r["node_status"] in ("seed", "kept")]
    if not rows:
        return pd.DataFrame(columns=cols)
    df = pd.DataFrame(rows)
    counts = (df.groupby(["run_id", "round"])["status"].value_counts().unstack(fill_value=0)
              .reindex(columns=list(CHECK_STATUSES), fill_value=0).reset_index())
    counts["checked"] = counts[CONSISTENT] + counts[INCONSISTENT]
    counts["share"] = counts[CONSISTENT] / counts["checked"].where(counts["checked"] > 0)
    out = counts[cols].copy()
    out.columns.name = None
    for c in ("round", "checked", "consistent", "inconsistent", "not_checkable"):
        out[c] = out[c].astype(int)
    return out.sort_values(["run_id", "round"]).reset_index(drop=True)


def check_statuses(store: Any, run_id: str) -> dict[str, str]:
    """node id -> its check status (nodes never checked are absent)."""
    return {r["node_id"]: r["status"] for r in store.answer_checks([run_id])}


def check_run_sync(store: Any, run_id: str, *, k: int = DEFAULT_K, temperature: float = DEFAULT_TEMPERATURE,
                   tolerance: float = TOLERANCE, recheck: bool = False, backend: Any = None,
                   progress: Callable[[dict[str, Any]], None] | None = None) -> dict[str, int]:
    """`python -m evolab check`: check a stored run's answered seeds and kept nodes with the run's own endpoint
    and model (calls, cost, cache and rate limits as in the run; its budget holds)."""

    run = store.get_run(run_id)
    if run is None:
        raise KeyError(f"No run {run_id!r} in {store.path}.")
    config = run["config"]

    async def go() -> dict[str, int]:
        client = client_for(store, run_id, config, backend or make_backend(config))
        try:
            return await check_run(store, client, run_id, k=k, temperature=temperature, tolerance=tolerance,
                                   max_tokens=config.max_tokens_respond, recheck=recheck,
                                   salt=str(config.random_seed), progress=progress)
        finally:
            await client.aclose()

    return asyncio.run(go())


def format_share(df: pd.DataFrame) -> str:
    """The per-round table `check` prints."""
    if df.empty:
        return "no checked answers yet"
    lines = ["round  checked  consistent  inconsistent  not_checkable  share"]
    for r in df.itertuples():
        share = "-" if pd.isna(r.share) else f"{r.share:.0%}"
        lines.append(f"{r.round:>5}  {r.checked:>7}  {r.consistent:>10}  {r.inconsistent:>12}  {r.not_checkable:>13}"
                     f"  {share:>5}")
    return "\n".join(lines)


def parse_checked(value: str | Iterable[str]) -> list[str]:
    """The export filter's statuses from "consistent,not_checkable" (or a list); unknown names are an error."""
    items = [v.strip() for v in (value.split(",") if isinstance(value, str) else value) if v.strip()]
    known = (*CHECK_STATUSES, UNCHECKED)
    unknown = [v for v in items if v not in known]
    if unknown or not items:
        raise ValueError(f"{', '.join(unknown) or 'nothing'} is not a check status; choose from {', '.join(known)}.")
    return items


def share_with_intervals(df: pd.DataFrame) -> pd.DataFrame:
    """`consistent_share` plus low / high (95% Wilson interval of the share, evolab.stats.wilson_interval) and
    too_small (fewer than stats.MIN_N compared items, or an interval wider than stats.MAX_WIDTH)."""

    out = df.copy()
    bounds = [wilson_interval(int(c), int(n)) for c, n in zip(out["consistent"], out["checked"])]
    out["low"] = [b[0] for b in bounds]
    out["high"] = [b[1] for b in bounds]
    out["too_small"] = [too_small(int(n), lo, hi) for n, (lo, hi) in zip(out["checked"], bounds)]
    return out
