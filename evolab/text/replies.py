"""Readers of free-text model replies, one per reply kind, in English and Korean.

When an endpoint has no structured output, evolab must read a judge's or scorer's reply the way a person
would. Every reader here takes the raw reply (or None) and returns the value the reply *gives*, or None when
a person could not read one with confidence. They never guess and never raise.

- `read_equal`: the equality judge ("Equal" / "Not Equal", or a sentence saying so).
- `read_score`: one score on a scale (difficulty 1-10, quality 0-5).
- `read_pair_scores`: the pairwise judge's two scores (Vicuna format, each 1-10).
- `read_evolved`: the evolver's rewrite, as (instruction, input or None).
- `read_instruction_list`: the new instructions a grow reply lists (evolab.seeds.craft), as (instruction, input).
- `read_tag`: a seed's skill (from the set's list, or a proposed new one) and difficulty 1-10.

Each reader also accepts a JSON object reply, bare or in a ```json fence (models answer JSON unasked).

The rules a person applies, and which the readers follow:
- a number that names the scale ("1 to 10", "(0-5)", "out of 10", "5점 만점") is not the score;
- a number in a hypothetical ("a score of 5 would need ...", "10점이 되려면") is not the score;
- both prompts ask for the score first (alone, or on the first line), so a lone value on the first line wins;
- a value out of range makes the reply unreadable (it is not clamped); two different values do too;
- in Korean, "동일" inside "동일하지 않" is a negation, and "다를 뿐" about wording is not a verdict;
- a verdict under a conclusion heading ("## 결론", "Verdict:") or after "my answer is" wins over analysis
  lines; a denied verdict is the other one ("Not Equal이라고 하기는 어렵습니다" is Equal); a sentence saying
  the question is open ("debatable", "either Equal or Not Equal") or a qualified sameness ("mostly the
  same") is no verdict;
- a hedge between two values ("7 or 8", "7점이나 8점") is unreadable, in the pair reader too; pairwise
  scores may stand in a markdown table, under a heading naming the assistant, or away from the name in a
  sentence naming only that assistant; "10점 만점에" between a name and its score is the scale;
- the evolver's reply may fence or quote the instruction and the input separately (fences do not nest),
  and a reply saying the prompt needs no rewrite gives no instruction;
- a reasoning model thinks aloud first (arithmetic checks, "6점과 7점 사이에서 고민했는데 ...") and then puts the
  score alone on a line: that line is the score, unless something after it names another value or
  hesitates; numbers in arithmetic are working, not scores; "7 or 8" is a hedge like "7-8";
- a Korean range "7점에서 8점 (정도)" is a hedge in the pair reader too;
- after the evolver's rewrite, a marked note ("※ 참고:"), a paragraph on what rewriting it this way does
  ("이렇게 재작성하면 ...") and a closing pleasantry ("도움이 되셨길 바랍니다!") are not the instruction; a
  parenthesised aside under the header saying no rewrite is needed gives none; Korean declarative prose
  with no request in it (the prompt answered instead of rewritten) gives none;
- another "#Section#:" marker after the rewrite ("#Explanation#:", "#설명#:") opens a section that is not the
  prompt (only "#Input#" belongs to it);
- "it depends (on whether ...)" / "해석에 따라 달라집니다" leaves the verdict open; a first impression set up to
  be overturned ("얼핏 Equal이라고 생각하기 쉽지만, ... 실제로는 Not Equal입니다") gives its verdict after the turn;
- a lone value may be spelled out ("Five.", "Score: seven"), never read out of running text; "Complexity:"
  labels a difficulty;
- a lone value may carry its reason in parentheses ("2 (basic definition question)"), as after a dash; "I'd
  say 3" is a first-person rating; a slash separates two pair scores ("6 / 8") unless 10 follows ("6/10");
- after the rewrite, a paragraph in which the model talks about the prompt or its rewriting and asks nothing
  (see `_is_remark`) is not the instruction, while a paragraph that asks something, or states facts with a
  subject of their own, is part of the task; the #Input# section is data and is never searched for remarks;
- with a header and nothing after it, the text before the header is a preamble: there is no instruction;
  English prose whose every sentence opens with its subject and asks nothing is an answer, not a rewrite.

The corpus these readers are measured on is tests/data/replies/ (bench/replies.py prints the table).
"""
from __future__ import annotations

import json
import re
import unicodedata
from typing import Any, Iterable

__all__ = ["read_equal", "read_score", "read_pair_scores", "read_evolved", "read_instruction_list", "read_tag"]

# -- shared helpers ----------------------------------------------------------------------------------------
# A whole reply wrapped in one code fence (```json ... ```, ``` ... ```, ```text ... ```).
_FENCE = re.compile(r"\A\s*```[\w+-]*[ \t]*\n?(.*?)\n?[ \t]*```\s*\Z", re.S)


def _unfence(text: str) -> str:
    m = _FENCE.match(text)
    # Fences do not nest (CommonMark): "```\nA\n```\n#Input#:\n```\nB\n```" is two blocks, not one around all.
    if not m or re.search(r"^[ \t]*```", m.group(1), re.M):
        return text
    return m.group(1)


def json_object(text: str) -> dict | None:
    """The JSON object a reply consists of (bare, fenced, or with a line of prose around it), or None."""
    body = _unfence(text).strip()
    start, end = body.find("{"), body.rfind("}")
    if start < 0 or end <= start:
        return None
    try:
        value = json.loads(body[start:end + 1])
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _key(name: Any) -> str:
    """A JSON key compared loosely: "Assistant 1", "assistant_1" and "assistant1" are one key."""
    return re.sub(r"[\s_\-]+", "", str(name)).lower()


def _lookup(obj: dict, *names: str) -> Any:
    keys = {_key(k): v for k, v in obj.items()}
    for name in names:
        if _key(name) in keys:
            return keys[_key(name)]
    return None


def _number(value: Any) -> float | None:
    """A JSON value as a number: 7, 7.5, "7", "7/10" (the part before the slash); bools are not numbers."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(?:점|/\s*\d+)?\s*", value)
        return float(m.group(1)) if m else None
    return None


def _normalise(text: str | None) -> str:
    """NFKC (full-width digits and colons become ASCII), Unix newlines, no markdown emphasis or backticks."""
    text = unicodedata.normalize("NFKC", text or "").replace("\r\n", "\n").replace("\r", "\n")
    return re.sub(r"\*\*|__|`", "", text)


def _in_range(value: float | None, low: float, high: float) -> float | None:
    return value if value is not None and low <= value <= high else None


# -- equality ------------------------------------------------------------------------------------------------
def _ascii_word(pattern: str) -> str:
    """An English word pattern that may touch Korean ("Equal입니다"): \\b fails there, since Hangul is \\w."""
    return r"(?<![a-z])(?:" + pattern + r")(?![a-z])"


_SAME = r"(?:equal|identical|equivalent|the\s+same|same)"
# Statements that are not verdicts: the options echoed from the prompt, and differences of wording only.
_EQ_NEUTRAL = re.compile(
    _ascii_word(r"equal") + r"\W{0,3}\s*(?:or|/|또는|혹은)\s*\W{0,3}not\s+equal"
    + r"|not\s+equal\W{0,3}\s*(?:or|/|또는|혹은)\s*\W{0,3}equal"
    # "differ only in wording", "the wording is slightly different", "differently phrased"
    + r"|(?:differ\w*|different(?:ly)?)\s+(?:\w+\s+){0,3}?(?:wording|phrasing|words?|word\s+choice|style|tone|order)"
    + r"|(?:wording|phrasing|word\s+choice|style|tone)\s+(?:\w+\s+){0,3}?(?:differ\w*|different)"
    + r"|different(?:ly)?\s+(?:worded|phrased)"
    # "not identical word for word", "not verbatim the same": a denial of sameness of wording only, not of
    # content ("identical word for word" without the negation is still Equal).
    + r"|(?:\bnot|n['’]t)\s+(?:\w+\s+){0,2}?(?:identical|the\s+same|equal)\s+(?:word[\s-]+for[\s-]+word|verbatim|"
      r"literally|in\s+(?:wording|phrasing))"
    + r"|(?:\bnot|n['’]t)\s+(?:\w+\s+)?(?:word[\s-]+for[\s-]+word|verbatim|literally)\s+(?:identical|the\s+same)"
    # "표현만 조금 다를 뿐", "단어 선택이 다르지만": a difference of wording, not of content
    + r"|(?:표현|단어|어순|문체|말투|어휘|문구)\S{0,3}\s*(?:\S+\s+){0,2}?(?:다르|다릅|다를|다른|다름|차이)\S*",
    re.I,
)
# "... 하기는 어렵습니다", "... 볼 수 없다": the verdict just named is denied.
_DENIED = r"(?:는|도)?\s*(?:하기|보기|말하기|할\s*수|볼\s*수)\s*(?:는|도|가)?\s*(?:어렵|없|힘들)"
# Double negations that say "equal": "not different", "no real difference", "다르지 않", "차이가 없".
_EQ_DOUBLE_NEG = re.compile(
    r"not\s+(?:really\s+|meaningfully\s+|substantially\s+)?different|no\s+(?:real\s+|meaningful\s+|substantive\s+)?"
    r"differences?|do(?:es)?\s*n[o']?t\s+differ|다르지\s*(?:는|도)?\s*않|차이(?:가|는|점이|점은)\s*(?:거의\s*)?없"
    # A denied "Not Equal" is Equal: "Not Equal이라고 하기는 어렵습니다", "다르다고 보기 어렵", "I wouldn't say they
    # are not equal".
    r"|(?:not\s+equal\s*(?:이)?라고|다르다고)\s*" + _DENIED
    + r"|(?:would\s*n['’]?t|can['’]?t|cannot)\s+(?:say|call\s+(?:them|it))\s+(?:(?:that\s+)?they(?:['’]re|\s+are)\s+)?"
      r"not\s+(?:equal|the\s+same)",
    re.I,
)
_EQ_NEGATIVE = re.compile(
    # "not equal", "not exactly the same", "aren't equal", "do not have the same constraints"
    r"(?:\bnot|n['’]t)\s+(?:\w+\s+){0,2}?" + _SAME + r"(?![a-z])"
    + r"|" + _ascii_word(r"unequal|non-?equal|inequivalent|differ(?:s|ent|ence|ences)?|distinct")
    # Korean: "같지 않", "동일하지는 않", "동일하다고 보기 어렵", "동일한 지시문이 아닙니다", "Equal이 아님"
    # (Hangul contracts: "아닙니다" holds 아닙, not 아니; "다릅니다" holds 다릅).
    + r"|(?:같|동일하|동등하|일치하|똑같)지\s*(?:는|도|가)?\s*않"
    + r"|(?:같|동일하|동등하|똑같)다고\s*(?:는\s*)?(?:보기|볼\s*수|할\s*수|하기)\s*(?:는\s*)?(?:어렵|없|힘들)"
    + r"|equal\s*(?:이)?라고\s*" + _DENIED  # "Equal이라고 하기는 어렵습니다" (after "Not Equal이라고" is taken)
    + r"|(?:같은|동일한|동등한|똑같은|equal)\s*(?:지시문|프롬프트|것|질문|내용)?\s*(?:이|가|은|는)?\s*(?:아니|아닙|아님|아냐)"
    + r"|다르|다릅|다른\s*(?:지시문|프롬프트|것|질문|요구|내용)|다름|상이|차이(?:가|점이)\s*(?:있|존재|납|난)|불일치|별개",
    re.I,
)
_EQ_POSITIVE = re.compile(
    _ascii_word(r"equal|identical|equivalent")
    # "the same" only as a statement about the two ("they are the same", "ask the same thing"), not
    # "the same constraints" inside an argument.
    + r"|(?:are|is|be|'re)\s+(?:\w+\s+){0,2}?the\s+same(?![a-z])"
    + r"|the\s+same\s+(?:instruction|prompt|question|task|request|thing)"
    + r"|같(?:습니다|다|아요|음|네요|으며|으므로|은\s*(?:지시문|프롬프트|질문|것|내용))|동일|동등|일치(?:합|한다|함)|똑같",
    re.I,
)
# A hedge makes the sentence no verdict: "they might be equal", "동일한 것 같기도".
# So does a qualified sameness: "mostly the same", "almost identical", "대체로 같" say "not quite", not a verdict.
_EQ_HEDGE = re.compile(
    _ascii_word(r"might|may|could|seems?|appears?|looks?|perhaps|possibly|hard\s+to\s+say|difficult\s+to\s+say|"
                r"not\s+sure|unsure|unclear|uncertain|at\s+first\s+glance|(?:mostly|largely|almost|nearly|"
                r"more\s+or\s+less|roughly)\s+(?:the\s+same|identical|equal|equivalent|similar)")
    + r"|것\s*같|듯|애매|모호|모르겠|판단하기\s*(?:가\s*)?어렵|단정하기\s*어렵|언뜻"
    + r"|(?:대체로|대부분|거의)\s*(?:같|동일|비슷|유사)",
    re.I,
)
# A sentence saying the question is open ("debatable", "either Equal or Not Equal", "판단이 갈릴") states both
# verdicts: a plain verdict elsewhere cannot settle it, only a labelled, standalone or concluding one.
_EQ_UNDECIDED = re.compile(
    _ascii_word(r"debatable|either\s+way|either\s+(?:answer|verdict|label|option)|either\W{0,3}\s*equal\W{0,3}\s*or"
                r"\W{0,3}\s*not\s+equal|open\s+to\s+(?:debate|interpretation)")
    + r"|어느\s*쪽(?:이든|으로도|이라고도|도)|판단이\s*갈|(?:둘|양쪽)\s*(?:다|모두)\s*(?:가능|말이\s*됩|타당)"
    + r"|(?:다고도|라고도)\s*\S+\s*(?:다고도|라고도)"  # "같다고도 다르다고도 볼 수 있습니다"
    # "It depends (on whether ...)", "해석에 따라 달라집니다": the verdict is made conditional on something the
    # reply leaves open, so both verdicts are on the table ("if it does, ...; if not, ...").
    + r"|" + _ascii_word(r"(?:it|that|this|the\s+(?:answer|verdict|judge?ment))\s+(?:really\s+|all\s+)?depends")
    + r"|(?:해석|관점|기준|보기|판단)\S{0,2}\s*(?:에\s*)?따라\s*(?:달라|다르|다릅)|(?:에|에게)\s*달려\s*있",
    re.I,
)
# A first impression set up to be overturned - "얼핏 Equal이라고 생각하기 쉽지만, ... 실제로는 Not Equal입니다",
# "At first glance ... Not Equal, but ..." - gives its verdict after the turn: the impression is named in order
# to be rejected, so only what follows the contrastive connective is the reply's verdict.
_EQ_OVERTURNED = re.compile(
    r"(?:얼핏|언뜻|처음에는|처음엔|겉(?:으로|보기)에?는|[가-힣]+기\s*쉽|" + _ascii_word(
        r"at\s+first(?:\s+glance|\s+sight)?|on\s+the\s+surface|superficially|(?:it's|it\s+is)\s+tempting\s+to")
    + r")[^.!?\n]*?(?:지만|으나|는데|" + _ascii_word(r"but|however|yet") + r")\s*,?\s*", re.I)
# A sentence that states the answer as such: "Judgement: ...", "my answer is: ...", "판단: ...".
_EQ_LABEL = re.compile(r"(?:judge?ment|verdict|answer|conclusion|decision|result|판단|결론|답변?|정답)\s*(?:is)?\s*[:：]",
                       re.I)
# A line that only announces the verdict on the next line: "## 결론", "Verdict:", "Final answer:".
_EQ_LABEL_ONLY = re.compile(r"^\W*(?:final\s+|최종\s*)?(?:judge?ment|verdict|answer|conclusion|decision|result|판단|결론|"
                            r"답|정답)\s*[:：]?\W*$", re.I)
# A labelled answer inside a sentence: "..., so my answer is Equal", "제 판단은 ...", "결론은 ...".
_EQ_LABEL_IN = re.compile(r"(?:\b(?:my|the|our)\s+(?:final\s+)?(?:answer|verdict|judge?ment|conclusion)\s+"
                          r"(?:is|would\s+be)|(?:판단|결론|최종\s*답)은)\s*[:：]?", re.I)
_EQ_CONCLUSION = re.compile(r"^\W*(?:therefore|so|thus|hence|overall|in\s+conclusion|in\s+short|ultimately|"
                            r"in\s+the\s+end|최종적으로|따라서|그러므로|결론적으로|그래서|즉|결국)", re.I)
_YES_NO = re.compile(r"^\W*(?:(no|nope|아니요|아니오|아뇨)|(yes|yep|네|예))(?![a-z가-힣])", re.I)
_SENTENCE_SPLIT = re.compile(r"\n+|(?<=[.!?。])\s+")


def _polarity(sentence: str) -> set[bool]:
    """The verdicts one sentence states: {False} for Not Equal, {True} for Equal, both, or none."""
    s = _EQ_NEUTRAL.sub(" ~ ", sentence.lower())
    found: set[bool] = set()
    for pattern, value in ((_EQ_DOUBLE_NEG, True), (_EQ_NEGATIVE, False), (_EQ_POSITIVE, True)):
        if pattern.search(s):
            found.add(value)
            s = pattern.sub(" ~ ", s)  # so "동일" inside "동일하지 않" is not read again as Equal
    return found


def _hedged(sentence: str) -> bool:
    """A hedge outside the verdict words themselves ("어렵" in "동일하다고 보기 어렵" is not one)."""
    s = sentence.lower()
    for pattern in (_EQ_DOUBLE_NEG, _EQ_NEGATIVE):
        s = pattern.sub(" ", s)
    return bool(_EQ_HEDGE.search(s))


def _verdict_from_json(obj: dict) -> bool | None:
    value = _lookup(obj, "equal", "is_equal", "same", "동일", "같음")
    if isinstance(value, bool):
        return value
    if value is None:
        value = _lookup(obj, "verdict", "judgement", "judgment", "answer", "result", "decision", "label",
                        "판단", "결론", "답")
    return read_equal(value) if isinstance(value, str) and not value.lstrip().startswith("{") else None


def read_equal(text: str | None) -> bool | None:
    """True when the reply says the two instructions are Equal, False for Not Equal, None when unreadable.

    Sentence by sentence: questions ("Equal or Not Equal?") and hedged sentences ("they might be equal")
    state nothing. When sentences disagree, a labelled answer ("Judgement: Not Equal") wins, then a short
    standalone verdict, then a conclusion ("Therefore, ..."); otherwise the reply is unreadable."""
    if not isinstance(text, str) or not text.strip():
        return None
    obj = json_object(text)
    if obj is not None:
        return _verdict_from_json(obj)
    # Quotes go ('"Not Equal"'); apostrophes inside words stay ("aren't").
    clean = re.sub(r"[\"“”「」『』]|(?<![A-Za-z])['‘’]|['‘’](?![A-Za-z])", " ", _normalise(text))
    sentences = [s.strip() for s in _SENTENCE_SPLIT.split(clean) if s and s.strip()]
    statements = []  # (polarity, labelled, standalone, conclusion)
    announced = False  # the previous line was a bare "## 결론" / "Verdict:": this one is the labelled answer
    for s in sentences:
        if s.endswith("?"):
            continue
        if _EQ_LABEL_ONLY.match(s):
            announced = True
            continue
        labelled, announced = announced or bool(_EQ_LABEL.search(s)), False
        turn = _EQ_OVERTURNED.search(s)
        if turn and turn.end() < len(s):
            s = s[turn.end():]  # the impression before the turn is rejected, not stated
        if _EQ_UNDECIDED.search(s):
            statements += [(True, False, False, False), (False, False, False, False)]
            continue
        # "They are not identical word for word, but ..., so my answer is Equal": the labelled part is the answer.
        m = _EQ_LABEL_IN.search(s)
        if m and len(_polarity(s[m.end():])) == 1 and not _hedged(s[m.end():]):
            s, labelled = s[m.end():], True
        found = _polarity(s)
        if len(found) != 1:
            continue
        if _hedged(s):
            continue
        statements.append((next(iter(found)), labelled, len(s) <= 24, bool(_EQ_CONCLUSION.search(s))))
    for select in (lambda st: st[1], lambda st: st[2], lambda st: True, lambda st: st[3]):
        chosen = {st[0] for st in statements if select(st)}
        if len(chosen) == 1:
            return chosen.pop()
    if statements:
        return None  # the reply says both and settles neither
    # No verdict words: a bare "No." / "Yes." answers the prompt's question "Are they equal?"
    answers = [s for s in sentences if not s.endswith("?")]
    if answers and not any(_EQ_HEDGE.search(s) for s in answers):
        m = _YES_NO.match(answers[0])
        if m:
            return m.group(2) is not None
    return None


# -- one score -------------------------------------------------------------------------------------------------
# A number that stands alone: not part of a word, a version, a decimal, a percentage or a thousands group.
_NUM = r"(?<![\w.,])(\d+(?:\.\d+)?)(?![\d]|\.\d|,\d|\s*%)"
# "Complexity" and "복잡도" name the difficulty too: the evolution prompts speak of making a prompt more complex,
# so a scorer labels its difficulty that way ("Complexity: 4").
_LABEL = (r"(?:overall\s+|final\s+|total\s+)?(?:score|rating|difficulty(?:\s+level)?|complexity(?:\s+level)?|quality|"
          r"accuracy|grade|evaluation|점수|난이도|복잡도|평가|정확도|품질|총점|최종\s*점수|종합\s*점수)")
_DENOM = r"(\d+)\s*점?"
# The reply's first line holding a lone value: "7", "7.", "Score: 7", "Accuracy (0-5): 4", "**8**" (markdown
# is already gone), "[[7]]", "7/10", "7점", "난이도: 7점", "평가: 7점 (10점 만점)", "3 - a simple question".
_LONE = re.compile(
    r"^\s*(?:#+\s*)?(?:" + _LABEL + r"\s*(?:\([^)]*\))?\s*(?:[:=：-]|is|은|는)?\s*)?[\[(]?\[?\s*" + _NUM
    + r"\s*\]?[\])]?\s*점?\s*(?:(?:/|out\s+of)\s*" + _DENOM + r")?\s*(?:\(\s*" + _DENOM + r"\s*만점\s*\))?"
    # What may follow the value: nothing, a dash and a remark ("3 - a simple question"), or a remark in
    # parentheses with no number in it ("2 (basic definition question)"): the reason, as after a dash. A number
    # inside ("7 (or 8)", "5 (out of 10)") may be another value or a scale, so that is read as before.
    + r"\s*(?:[.!]?\s*$|\s[-–—]\s*\S|\s*\((?![^)]*\d)[^)]*\)\s*[.!]?\s*$)",
    re.I,
)
# A line that only announces the score on the next line: "## Score:", "점수:", "Evaluation:".
_LABEL_ONLY = re.compile(r"^\s*#*\s*" + _LABEL + r"\s*(?:\([^)]*\))?\s*[:：]?\s*$", re.I)
# Value with its scale: "7/10", "7 out of 10", "10점 만점에 8점", "10점 중 7점", "8점 (10점 만점)"; the
# denominator is checked against the scale.
_WITH_SCALE = [
    (re.compile(_NUM + r"\s*점?\s*(?:/|out\s+of)\s*" + _DENOM, re.I), 1, 2),
    (re.compile(_DENOM + r"\s*만점\s*(?:에서|에|중에서|중|기준으로?)?\s*,?\s*" + _NUM + r"\s*점?"), 2, 1),
    (re.compile(_DENOM + r"\s*(?:중에서|중에|중)\s*" + _NUM + r"\s*점"), 2, 1),
    (re.compile(_NUM + r"\s*점?\s*\(\s*" + _DENOM + r"\s*만점\s*\)"), 1, 2),
]
# Scales and ranges. A range whose ends are the scale's is the scale ("1-10", "0점에서 5점 사이"); any other
# range ("7-8", "between 6 and 7", "7~8점") is the reply hesitating between two scores.
_RANGE = re.compile(
    r"(?:(?:on\s+)?(?:a\s+)?scale\s+(?:of\s+|from\s+)?)?(?:from\s+|between\s+)?\(?\s*(\d+(?:\.\d+)?)\s*점?\s*"
    r"(?:-|–|—|~|to|and|에서|부터)\s*(\d+(?:\.\d+)?)\s*점?\s*\)?\s*(?:사이(?:로|에서|에)?|까지)?",
    re.I,
)
# A number followed by a counted noun is a count, not a score: "2 or 3 examples", "3가지".
_NOT_A_COUNT = (r"(?![ \t]*(?:가지|개|년|%|번|배|단계|명|문장|줄|sentences?|examples?|steps?|years?|items?|"
                r"paragraphs?|words?|lines?|times?|ways?|reasons?|days?|months?|hours?|minutes?)(?![a-z]))")
# A hedge between two scores with "or" ("Score: 7 or 8", "I'd give it a 7 or 8", "7 또는 8") leaves the score
# unread, as a range does: the reply names two values and picks neither.
_SCORE_HEDGE = re.compile(r"(?<![\w.,])(\d+(?:\.\d)?)[ \t]*점?[ \t]*(?:or(?![a-z])|또는|혹은|내지|이나|나)[ \t]*(?:an?[ \t]+)?"
                          r"(\d+(?:\.\d)?)(?![\d.]\d)" + _NOT_A_COUNT, re.I)
_SCALE_WORDS = re.compile(r"(?:\d+\s*점\s*만점|out\s+of\s+\d+|scale\s+of\s+\d+)", re.I)
# Explicit values: after a label ("Score: 7", "난이도는 3", "a score of 4"), after a rating verb ("I rate it
# 9", "I'd give this response a 4"), "[[7]]", and Korean "N점".
_EXPLICIT = [
    re.compile(r"\[\[\s*" + _NUM + r"\s*\]\]"),
    # "difficulty of this question is 7", "the rating for the answer: 4"
    re.compile(_LABEL + r"(?:\s+(?:of|for)\s+(?:this|the|that|its|it)(?:\s+[a-z']+){0,2}?(?=\s+(?:is|was|=|:)))?"
               r"\s*(?:\([^)]*\))?\s*(?:is|was|of|would\s+be|=|:|-|–|—|→|은|는|이|가)?\s*"
               r"(?:about|around|approximately|roughly|약)?\s*(?:a\s+|an\s+)?" + _NUM, re.I),
    re.compile(r"(?:rate|rated|rating|score|scored|give|giving|gave|assign|assigned|award|awarded|deserves?|merits?|"
               r"grade|graded)\s+(?:(?:it|this|that|the|question|question's|response|response's|answer|prompt|"
               r"task|difficulty|accuracy|quality|one)\s+){0,3}(?:a|an|as|at|with)?\s*"
               r"(?:(?:score|rating|grade)\s+of\s+)?(?:a\s+|an\s+)?" + _NUM, re.I),
    re.compile(_NUM + r"\s*점"),
    # A first-person verdict: "I'd say 3.", "I would say it's a 6", "I'd go with 4", "I'd put it at 7" - the
    # speaker's own rating, as "I rate it 3" is ("I'd say 3 or 4" is a hedge, taken out before).
    re.compile(r"\bi(?:['’]d|\s+would|['’]ll|\s+will)\s+(?:say|go\s+with|put\s+it\s+at|call\s+it)\s+"
               r"(?:(?:it['’]s|it\s+is|this\s+is)\s+)?(?:a\s+|an\s+)?" + _NUM, re.I),
    # A number as the predicate of a Korean sentence: "매기면 6입니다", "이 질문은 9에 해당합니다", "5로 봅니다".
    re.compile(_NUM + r"(?=\s*(?:입니다|이다|이에요|예요|에\s*해당|정도(?:입니다|예요|이다|로|라고)|"
               r"(?:으로|로)\s*(?:평가|매기|매깁|봅|보|판단|책정)))"),
]
# Weak: "about a 6.", "a solid 4," - an article before a number that ends the clause.
_WEAK = re.compile(r"\ban?\s+(?:solid\s+|strong\s+|low\s+|high\s+)?" + _NUM
                   + r"(?=\s*(?:[.,;!)]|$|\s(?:for|on|in|because|since|given|overall)\b))", re.I)
# A number in a hypothetical or a comparison is not the score: "a score of 5 would need ...", "to get a 5",
# "rather than 8", "10점이 되려면", "5점을 받으려면", "2점 감점".
_HYPO_BEFORE = re.compile(
    r"(?:to\s+(?:get|reach|earn|achieve|deserve|receive|merit)|rather\s+than|instead\s+of|\bnot|than|above|below|"
    r"over|under|except|would\s+(?:get|earn|deserve|receive|need|require|have)|could\s+(?:get|be)|if\s+it\s+were)"
    r"\s+(?:a\s+|an\s+)?(?:(?:score|rating|grade)\s+of\s+)?(?:a\s+|an\s+)?$", re.I)
_HYPO_AFTER = re.compile(
    r"^\s*(?:점)?\s*(?:would\s+(?:need|require|mean|have|only|demand|call|be\s+(?:reserved|for|given\s+(?:to|if|only)))|"
    r"requires?|needs?|is\s+reserved|is\s+for|would\s+be\s+for|if\b|"
    # the condition may follow a noun on the value: "10점 수준이 되려면", "9점짜리 답이 되려면"
    r"(?:[가-힣]{1,4}\s*(?:이|가|을|를)\s*(?:받으려면|주려면|되려면|받기\s*위해|되기\s*위해|주기\s*위해))|"
    r"(?:을|를|이|가)?\s*(?:받으려면|주려면|되려면|받기\s*위해|되기\s*위해|주기\s*위해|받으려|받을\s*수\s*있|"
    r"에는?\s*(?:못|미치지)|에\s*가까|보다|(?:은|이|는)\s*(?:아니|아닙|아님)|감점|차감|을?\s*빼|을?\s*깎|짜리|이상|이하))",
    re.I)
_CONCLUSION = re.compile(r"(?:therefore|thus|hence|overall|in\s+conclusion|final|total|so\b|따라서|그러므로|결론적으로|"
                         r"최종|종합|총점|결국)", re.I)


_ON_SCALE = re.compile(_NUM + r"\s*점?\s*(?:on\s+(?:your|the\s+given|the\s+requested|the\s+asked|this|that|the)\s+"
                       r"(?:\d+\s*(?:-|to)\s*\d+\s+)?scale)", re.I)


def _blank(text: str, start: int, end: int) -> str:
    return text[:start] + " " * (end - start) + text[end:]


def _score_from_json(obj: dict, low: float, high: float) -> float | None:
    value = _lookup(obj, "score", "rating", "difficulty", "quality", "accuracy", "grade", "value", "overall",
                    "점수", "난이도", "정확도", "평가", "품질")
    if isinstance(value, dict):
        return _score_from_json(value, low, high)
    return _in_range(_number(value), low, high)


# A lone value may be spelled out ("Five.", "Score: seven", "다섯"): a number word standing alone on the line,
# with at most a label before it, is that number. Only alone - inside a sentence "one" is a pronoun ("the
# second one") and "ten" may be part of a phrase - so a word is never read out of running text.
_NUMBER_WORDS = {w: str(i) for i, w in enumerate(
    "zero one two three four five six seven eight nine ten".split())}
_NUMBER_WORDS.update({w: str(i) for i, w in enumerate("하나 둘 셋 넷 다섯 여섯 일곱 여덟 아홉 열".split(), 1)})
_WORD_LINE = re.compile(r"^(\s*(?:#+\s*)?(?:" + _LABEL + r"\s*(?:\([^)]*\))?\s*(?:[:=：-]|is|은|는)?\s*)?)("
                        + "|".join(_NUMBER_WORDS) + r")(?![a-z가-힣])(\s*[.!]?\s*)$", re.I)


def _spelled_out(line: str) -> str:
    m = _WORD_LINE.match(line)
    return m.group(1) + _NUMBER_WORDS[m.group(2).lower()] + m.group(3) if m else line


def _first_line_value(text: str, high: float) -> tuple[bool, float | None]:
    """(found, value) for a lone value on the first line that says something (a label-only line such as
    "## Score:" joins the next). A denominator other than the scale's top makes the value unreadable."""
    lines = [line for line in text.split("\n") if line.strip()]
    while lines and _LABEL_ONLY.match(lines[0]) and len(lines) > 1:
        lines = lines[1:]
    if not lines:
        return False, None
    lines[0] = _spelled_out(lines[0])
    m = _LONE.match(lines[0])
    if not m:
        # A short verbal grade before the value does not hide it: "Easy. 1", "Hard! 8", "Moderate: 5" (the
        # value closes the line after a stop, and nothing before it is a number).
        head, _, last = lines[0].strip().rpartition(" ")
        if not (re.search(r"[.!:,\-–—]$", head) and len(head.split()) <= 3 and not re.search(r"\d", head)):
            return False, None
        m = _LONE.match(last)
        if not m:
            return False, None
    denominators = [float(d) for d in m.groups()[1:] if d]
    if any(d != high for d in denominators):
        return True, None
    return True, float(m.group(1))


def read_score(text: str | None, low: float, high: float) -> float | None:
    """The one score the reply gives on the scale [low, high], or None when unreadable or ambiguous.

    In order: a JSON object; a lone value on the first line (both scoring prompts ask for the score first);
    a score line after the reasoning (see `_score_line`); then every explicit value in the reply (after a
    label, a rating verb, with its scale, "[[7]]", "7점"), leaving out the scale itself, ranges, arithmetic and
    hypotheticals. One distinct value is the score; several are settled by a conclusion ("Overall",
    "Therefore", "최종") or not at all."""
    if not isinstance(text, str) or not text.strip():
        return None
    obj = json_object(text)
    if obj is not None:
        return _score_from_json(obj, low, high)
    clean = _normalise(text)
    found, value = _first_line_value(clean, high)
    if found:
        return _in_range(value, low, high)
    # A value the reply itself puts on the asked scale wins over one on another scale: "7 out of 10, so 3.5
    # on your scale", "네가 준 척도로는 4점".
    on_scale = {float(m.group(1)) for m in _ON_SCALE.finditer(clean)}
    if len(on_scale) == 1:
        return _in_range(on_scale.pop(), low, high)
    found, value = _score_line(clean, low, high)
    if found:
        return _in_range(value, low, high)
    return _in_range(_settle(clean, _candidates(clean, low, high)), low, high)


def _score_line(clean: str, low: float, high: float) -> tuple[bool, float | None]:
    """(found, value) for the score a reasoning model states on a line of its own after thinking aloud.

    Reasoning models answer the prompt's "score first" after their reasoning: they check the arithmetic,
    weigh two candidates ("6점과 7점 사이에서 고민했는데 ... 7점이 적절하겠습니다"), then put the score alone
    on a line ("**7**", "Score: 5"), maybe with a line of justification under it. A person reads that line
    as the answer and the numbers in the reasoning above it as working. So: the lines (after the first) that
    hold just a value must all give the same value (or a conclusion - "Final score: 6" - picks one; else the
    reply is unreadable), and nothing after the last of them may name another value or hesitate; then that
    value is the score. Otherwise the reply is read as a whole, as before."""
    lines = clean.split("\n")
    found: list[tuple[int, float | None]] = []  # (line index, value) of every score line after the first
    for i, line in enumerate(lines):
        if i == 0 or not line.strip():
            continue
        is_score, value = _first_line_value(line, high)
        if is_score:
            found.append((i, value))
    if not found:
        return False, None
    if len({v for _, v in found}) > 1:
        # Score lines that disagree ("8" ... "Score: 6") give two answers; a conclusion on one of them
        # ("Final score: 6") settles it, as elsewhere in the reply; otherwise the reply is unreadable.
        found = [(i, v) for i, v in found if _CONCLUSION.search(lines[i])]
        if len({v for _, v in found}) != 1:
            return True, None
    last, value = found[-1]
    if value is None:
        return True, None  # "Score: 4/10" on a 0-5 scale: a value on another scale is not convertible
    tail = "\n".join(lines[last + 1:])
    if any(v != value for _, v, _ in _candidates(tail, low, high)):
        return False, None
    return True, value


# A number in arithmetic is working, not a score: "(1 - 1.004167^-180)", "= 3,703.7 + 3,429.4". A range
# end next to an operator, or with more than one decimal (no score has two), is part of a calculation.
# ("=" before the range is left out: "Score = 7-8" is a label.)
_ARITH_BEFORE = re.compile(r"[*/×÷^+]\s*\(?\s*$")
_ARITH_AFTER = re.compile(r"^\s*\)?\s*[=*/×÷^+]")


def _arithmetic(text: str, m: re.Match) -> bool:
    if any(re.search(r"\.\d{2,}$", m.group(g)) for g in (1, 2)):
        return True
    return bool(_ARITH_BEFORE.search(text[max(0, m.start(1) - 12):m.start(1)])
                or _ARITH_AFTER.match(text[m.end(2):m.end(2) + 12]))


def _candidates(clean: str, low: float, high: float) -> list[tuple[int, float | None, bool]]:
    """Every value the text gives, in order: (position, value or None if unreadable, weak)."""
    work = clean
    candidates: list[tuple[int, float | None, bool]] = []  # (position, value or None if unreadable, weak)

    def take(start: int, end: int, value: float | None, weak: bool = False) -> None:
        nonlocal work
        before, after = work[max(0, start - 40):start], work[end:end + 40]
        if value is not None and (_HYPO_BEFORE.search(before) or _HYPO_AFTER.match(after)):
            work = _blank(work, start, end)  # a hypothetical: neither the score nor a second opinion
            return
        candidates.append((start, value, weak))
        work = _blank(work, start, end)

    for pattern, num_group, denom_group in _WITH_SCALE:
        for m in list(pattern.finditer(work)):
            denom = float(m.group(denom_group))
            if denom == high:
                take(m.start(), m.end(), float(m.group(num_group)))
            elif denom in (5, 10, 100):
                take(m.start(), m.end(), None)  # a score on another scale: not convertible
            else:
                work = _blank(work, m.start(), m.end())  # "3 of 5 steps": a fraction, not a score
    for m in list(_RANGE.finditer(work)):
        a, b = float(m.group(1)), float(m.group(2))
        says_scale = bool(re.search(r"scale|사이|까지|부터|에서|\(", m.group(0), re.I))
        if _arithmetic(work, m):
            work = _blank(work, m.start(), m.end())  # a calculation
        elif (a in (0, 1, low) and b == high) or says_scale and a < b and b in (5, 10, 100):
            work = _blank(work, m.start(), m.end())  # the scale
        elif a < b and low <= a and b <= high and (b - a) <= (high - low) / 2:
            take(m.start(), m.end(), None)  # "7-8": hesitating between two scores
    for m in list(_SCORE_HEDGE.finditer(work)):
        a, b = float(m.group(1)), float(m.group(2))
        if a != b and low <= min(a, b) and max(a, b) <= high and abs(b - a) <= (high - low) / 2:
            take(m.start(), m.end(), None)  # "7 or 8": hesitating between two scores
    for m in list(_SCALE_WORDS.finditer(work)):
        work = _blank(work, m.start(), m.end())
    for pattern in _EXPLICIT:
        for m in list(pattern.finditer(work)):
            take(m.start(1), m.end(1), float(m.group(1)))
    for m in list(_WEAK.finditer(work)):
        take(m.start(1), m.end(1), float(m.group(1)), weak=True)
    return candidates


def _settle(clean: str, candidates: list[tuple[int, float | None, bool]]) -> float | None:
    for tier in (False, True):
        values = [(pos, v) for pos, v, weak in candidates if weak == tier]
        if not values:
            continue
        distinct = {v for _, v in values}
        if len(distinct) > 1:
            # Settle by a conclusion on the value's own line ("Overall: 4", "Therefore, I rate it 6").
            concluded = {v for pos, v in values if _CONCLUSION.search(clean[clean.rfind("\n", 0, pos) + 1:pos])}
            distinct = concluded if len(concluded) == 1 else distinct
        if len(distinct) != 1:
            return None
        return distinct.pop()
    return None


# -- pairwise scores -------------------------------------------------------------------------------------------
_PAIR_LOW, _PAIR_HIGH = 1.0, 10.0
_PNUM = r"(\d+(?:\.\d+)?)"
# One score as written in a pair: "8", "[[8]]", "8/10", "8점".
_ONE = r"\[?\[?\s*" + _PNUM + r"\s*\]?\]?\s*점?\s*(?:/\s*10\s*점?)?"
# A label for the two scores, plain or qualified: "Scores:", "Final scores:", "최종 점수:".
_PAIR_LABEL = r"(?:(?:final|overall|total)\s+)?(?:scores?|ratings?)|(?:최종|종합)?\s*점수|평가"
# A line that is only the two scores: "8 6", "8, 6", "8/10 6/10", "[[8]] [[6]]", "Scores: 8 6", "8 and 6".
# A slash separates the two as a comma does ("6 / 8"), unless 10 follows it: "6/10" is six out of ten (the
# scale), so a lone "6/10" stays one score and no pair.
_PAIR_LINE = re.compile(r"^\s*(?:#+\s*)?(?:(?:" + _PAIR_LABEL + r")\s*[:：=]?\s*)?" + _ONE
                        + r"\s*(?:,|;|\||\s|and|와|과|그리고|/(?!\s*10(?![\d.])))+\s*" + _ONE + r"\s*[.]?\s*$", re.I)
# "Assistant 1", "Assistant #2", "어시스턴트 1", "1번 어시스턴트", "AI 어시스턴트 2", and by ordinal: "the first
# assistant", "두 번째 어시스턴트" (`_who` says which).
_WHO = (r"(?:(?:assistant|어시스턴트)\s*#?\s*([12])(?![\d.])|([12])\s*번\s*(?:어시스턴트|답변|응답)"
        r"|(first|second)\s+assistant|(첫|두)\s*번째\s*(?:어시스턴트|답변|응답))")
_WHO_GROUPS = 4


def _who(m: re.Match) -> str:
    """"1" or "2" for a match of a pattern that starts with _WHO."""
    g = [m.group(i + 1) for i in range(_WHO_GROUPS)]
    word = next(x for x in g if x).lower()
    return {"first": "1", "second": "2", "첫": "1", "두": "2"}.get(word, word)


# What may stand between the name and its score: "'s score:", "receives", "gets a score of", "은", "에게", "→".
_BETWEEN = (r"(?:\s*(?:['’]s|의)?\s*(?:overall\s+)?(?:score|rating|점수)?\s*(?:는|은|이|가|에게는|에게)?\s*"
            r"(?:->|=>|→|⇒|[:=\-–—]|receives?|gets?|earns?|scores?|scored|is\s+given|deserves?)?\s*(?:a\s+|an\s+)?"
            r"(?:score\s+of\s+|rating\s+of\s+)?)")
# The score must not be the start of "3가지" or "5-year": after it, only 점, a separator or the end.
_AFTER = r"(?=\s*점|\s*/\s*10|\s*[,.;)\]\n]|\s*$|\s+(?:and|while|but|for|과|와|이고|으로|을|를|입니다|and)\b|\s)(?![가-힣])"
_COUNT_NOUN = r"(?!\s*(?:가지|개|년|%|번|배|단계|명))"
_WHO_SCORE = re.compile(_WHO + _BETWEEN + r"\[?\[?" + _PNUM + r"(?![\d.]\d)" + _COUNT_NOUN, re.I)
_BOTH = re.compile(r"both\s+(?:assistants?\s+|responses?\s+|answers?\s+)?(?:receive|get|score|earn|deserve)\s+"
                   r"(?:a\s+)?(?:score\s+of\s+)?" + _PNUM + r"(?![\d.]\d)"
                   + r"|(?:두|양쪽|둘)\s*(?:어시스턴트|답변|응답)?\s*(?:모두|다)\s*" + _PNUM + r"\s*점", re.I)
# "I'd score them 8 and 6 respectively", "각각 8점과 6점".
_RESPECTIVELY = re.compile(_PNUM + r"\s*점?\s*(?:and|,|과|와)\s*" + _PNUM + r"\s*점?\s*,?\s*respectively"
                           r"|각각\s*" + _PNUM + r"\s*점?\s*(?:과|와|,|및)\s*" + _PNUM + r"\s*점", re.I)
_BRACKETS = re.compile(r"\[\[\s*" + _PNUM + r"\s*\]\]")
# The scale is not a score: "on a scale of 1-10", "1점에서 10점 사이", "(1-10)", "out of 10", and "10점 만점에"
# standing between a name and its score ("어시스턴트 1은 10점 만점에 9점").
_PAIR_SCALE = re.compile(r"(?:on\s+)?(?:a\s+)?scale\s+(?:of\s+|from\s+)?\d+\s*(?:-|–|to|~)\s*\d+|"
                         r"\d+\s*점?\s*(?:에서|부터)\s*\d+\s*점?\s*(?:사이|까지)|\(\s*\d+\s*[-~]\s*10\s*\)|out\s+of\s+10"
                         r"|\d+\s*점\s*만점\s*(?:에서|에|중에서|중|기준(?:으로)?)?",
                         re.I)
# A hedge between two values for one score ("7점이나 8점 정도", "7 or 8", "between 7 and 8", "7-8") leaves that
# score unread, as in the single-score reader: the pair is unreadable.
# Korean states a range with 에서/부터 too ("7점에서 8점 정도"); the scale's own range ("1점에서 10점 사이") is
# gone by then (_PAIR_SCALE), and a range as wide as half the scale is not a hedge (see `_hedges`).
_PAIR_HEDGE = re.compile(
    r"(?<![\w.])" + _PNUM + r"[ \t]*점?[ \t]*(?:/[ \t]*10[ \t]*)?(?:or(?![a-z])|이나|나|또는|혹은|내지|~|-|–|to(?![a-z])|"
    r"(?<=점)[ \t]*(?:에서|부터))[ \t]*" + _PNUM + r"(?![\d.]\d)" + _NOT_A_COUNT, re.I)
_PAIR_BETWEEN = re.compile(r"between[ \t]+" + _PNUM + r"[ \t]*(?:/[ \t]*10[ \t]*)?and[ \t]+" + _PNUM + r"(?![\d.]\d)"
                           + _NOT_A_COUNT, re.I)
# A cell of a markdown table: "| Assistant 1 | 7 |", "| 1 | 7/10 |", "| 어시스턴트 2 | 6점 |".
_CELL_WHO = re.compile(r"(?:" + _WHO + r"|([12]))\s*[:：]?", re.I)
_CELL_SCORE = re.compile(_ONE, re.I)
_SCORE_HEADER = re.compile(r"(?:(?:final|overall|total)\s+)?(?:scores?|ratings?|grades?)|(?:최종|종합)?\s*점수|총점|"
                           r"평가\s*점수|overall|total|final|최종|종합", re.I)
_FINAL_HEADER = re.compile(r"final|overall|total|최종|종합|총점", re.I)
# A line that only names an assistant opens its section: "### 어시스턴트 1", "Assistant 2:", "- 1번 답변".
_SECTION_HEAD = re.compile(r"^\s*(?:#+\s*|[-*]\s*)?" + _WHO + r"\s*[:：]?\s*(?:\([^)]*\))?\s*$", re.I)
_OTHER_HEAD = re.compile(r"^\s*#+\s*\S")
# A labelled score line inside a section: "- 점수: 8", "Score: 7/10", "Overall score = 6".
_SECTION_SCORE = re.compile(r"^\s*(?:[-*]\s*)?(?:" + _PAIR_LABEL + r"|총점)\s*[:：=]\s*" + _ONE + r"(?![\d.]\d)"
                            + _COUNT_NOUN, re.I)
# A score in a sentence that names one assistant, away from the name: "어시스턴트 2는 ... 6점을 드려요",
# "Assistant 2 ... so I give it a 6.".
_SENTENCE_SCORE = re.compile(
    r"(?<![\w.])" + _PNUM + r"\s*(?:점(?!수)|/\s*10)"
    + r"|\[\[\s*" + _PNUM + r"\s*\]\]"
    + r"|(?:give|gives|giving|rate|rates|rated|deserves?|earns?|gets?|receives?)\s+(?:it|this|this\s+one|them)?\s*"
      r"(?:a\s+|an\s+)?(?:score\s+of\s+|rating\s+of\s+)?" + _PNUM
    + r"(?![\d.]\d)(?=\s*(?:[.,;!)]|$|\s+(?:for|because|since|as|overall)\b))", re.I)
_PAIR_SENTENCES = re.compile(r"\n+|(?<=[.!?。])\s+")


def _table_scores(lines: list[str]) -> dict[str, set[float | None]]:
    """The scores a markdown table gives, by assistant: a row per assistant ("| Assistant 1 | 7 |", with a
    score column when there are several numbers) or a column per assistant with a score row. A cell that is
    not one score is None (unreadable)."""
    found: dict[str, set[float | None]] = {"1": set(), "2": set()}
    rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in lines if line.lstrip().startswith("|")]
    rows = [r for r in rows if not all(re.fullmatch(r":?-{2,}:?|", c) for c in r)]  # the |---| line
    if len(rows) < 2:
        return found

    def who(cell: str) -> str | None:
        m = _CELL_WHO.fullmatch(cell)
        if not m:
            return None
        return m.group(_WHO_GROUPS + 1) or _who(m)

    def score(cell: str) -> float | None:
        m = _CELL_SCORE.fullmatch(cell)
        return float(m.group(1)) if m else None

    def score_column(cells: list[str]) -> int | None:
        columns = [i for i, c in enumerate(cells) if _SCORE_HEADER.fullmatch(c)]
        if len(columns) > 1:
            columns = [i for i in columns if _FINAL_HEADER.search(cells[i])]
        return columns[0] if len(columns) == 1 else None

    header = rows[0]
    named_columns = {i: who(c) for i, c in enumerate(header) if who(c)}
    if len(set(named_columns.values())) == 2:  # | | Assistant 1 | Assistant 2 |, then a "Score" row
        for row in rows[1:]:
            if row and _SCORE_HEADER.fullmatch(row[0]):
                for i, name in named_columns.items():
                    found[name].add(score(row[i]) if i < len(row) else None)
        return found
    column = score_column(header)
    for row in rows[1:]:
        name = who(row[0]) if row else None
        if name is None:
            continue
        if column is not None:
            found[name].add(score(row[column]) if column < len(row) else None)
        else:
            values = [score(c) for c in row[1:] if score(c) is not None]
            found[name].add(values[0] if len(values) == 1 else None)
    return found


def _section_scores(lines: list[str]) -> dict[str, set[float | None]]:
    """Labelled scores ("- 점수: 8") under a line that only names an assistant ("### 어시스턴트 1"), up to the
    next such line or another heading."""
    found: dict[str, set[float | None]] = {"1": set(), "2": set()}
    current = None
    for line in lines:
        head = _SECTION_HEAD.match(line)
        if head:
            current = _who(head)
            continue
        if _OTHER_HEAD.match(line):
            current = None
            continue
        m = _SECTION_SCORE.match(line)
        if current and m:
            found[current].add(float(m.group(1)))
    return found


def _sentence_scores(clean: str) -> dict[str, set[float]]:
    """Scores in sentences that name exactly one assistant and hold exactly one score."""
    found: dict[str, set[float]] = {"1": set(), "2": set()}
    for sentence in _PAIR_SENTENCES.split(clean):
        names = {_who(m) for m in re.finditer(_WHO, sentence, re.I)}
        values = {float(next(g for g in m.groups() if g)) for m in _SENTENCE_SCORE.finditer(sentence)}
        if len(names) == 1 and len(values) == 1:
            found[names.pop()].add(values.pop())
    return found


def _pair(a: float | None, b: float | None) -> tuple[float, float] | None:
    if a is None or b is None:
        return None
    if not (_PAIR_LOW <= a <= _PAIR_HIGH and _PAIR_LOW <= b <= _PAIR_HIGH):
        return None
    return a, b


def _pair_from_json(obj: dict) -> tuple[float, float] | None:
    scores = _lookup(obj, "scores", "score", "점수")
    if isinstance(scores, list) and len(scores) == 2:
        return _pair(_number(scores[0]), _number(scores[1]))
    if isinstance(scores, dict):
        return _pair_from_json(scores)
    a = _lookup(obj, "assistant_1", "assistant 1", "assistant1_score", "score_1", "score1", "a", "어시스턴트 1",
                "어시스턴트1")
    b = _lookup(obj, "assistant_2", "assistant 2", "assistant2_score", "score_2", "score2", "b", "어시스턴트 2",
                "어시스턴트2")
    if isinstance(a, dict):
        a = _lookup(a, "score", "rating", "점수")
    if isinstance(b, dict):
        b = _lookup(b, "score", "rating", "점수")
    return _pair(_number(a), _number(b))


def _hedges(clean: str) -> bool:
    clean = re.sub(_WHO, " ", clean, flags=re.I)  # "Assistant 1 - 4" is a name and a score, not a range
    for m in list(_PAIR_HEDGE.finditer(clean)) + list(_PAIR_BETWEEN.finditer(clean)):
        a, b = float(m.group(1)), float(m.group(2))
        if _PAIR_LOW <= a < b <= _PAIR_HIGH and b - a <= (_PAIR_HIGH - _PAIR_LOW) / 2:
            return True
    return False


def read_pair_scores(text: str | None) -> tuple[float, float] | None:
    """(score of Assistant 1, score of Assistant 2), each in 1..10, or None when unreadable.

    In order: a JSON object; the first line holding just two scores (the Vicuna prompt asks for that);
    a hedge between two values anywhere makes the reply unreadable; named scores - in a markdown table, in a
    section under the assistant's name, next to the name ("Assistant 1: 8/10", "어시스턴트 2는 6점"), or
    else alone in a sentence naming that assistant - each assistant with one distinct value; exactly two
    "[[n]]"; a later line holding just two scores; "both receive 8". A score out of range makes the reply
    unreadable."""
    if not isinstance(text, str) or not text.strip():
        return None
    obj = json_object(text)
    if obj is not None:
        return _pair_from_json(obj)
    clean = _PAIR_SCALE.sub(" ", _normalise(text))
    lines = [line for line in clean.split("\n") if line.strip()]
    while len(lines) > 1 and re.fullmatch(r"\s*#*\s*(?:" + _PAIR_LABEL + r")\s*[:：]?\s*", lines[0], re.I):
        lines = lines[1:]
    if not lines:
        return None
    m = _PAIR_LINE.match(lines[0])
    if m:
        return _pair(float(m.group(1)), float(m.group(2)))
    if _hedges(clean):
        return None
    named: dict[str, set[float | None]] = {"1": set(), "2": set()}
    for found in (_table_scores(lines), _section_scores(lines)):
        for name in named:
            named[name] |= found[name]
    for m in _WHO_SCORE.finditer(clean):
        named[_who(m)].add(float(m.group(_WHO_GROUPS + 1)))
    # An assistant whose score stands away from its name: the one score of a sentence naming it alone.
    by_sentence = _sentence_scores(clean)
    if named["1"] or named["2"] or (by_sentence["1"] and by_sentence["2"]):
        for name in named:
            named[name] = named[name] or set(by_sentence[name])
        if len(named["1"]) == 1 and len(named["2"]) == 1:
            return _pair(named["1"].pop(), named["2"].pop())
        return None
    respectively = {(float(m.group(1) or m.group(3)), float(m.group(2) or m.group(4)))
                    for m in _RESPECTIVELY.finditer(clean)}
    if len(respectively) == 1:
        return _pair(*respectively.pop())
    brackets = _BRACKETS.findall(clean)
    if len(brackets) == 2:
        return _pair(float(brackets[0]), float(brackets[1]))
    pairs = {(float(m.group(1)), float(m.group(2))) for m in map(_PAIR_LINE.match, lines) if m}
    if len(pairs) == 1:
        return _pair(*pairs.pop())
    if pairs:
        return None
    both = {float(m.group(1) or m.group(2)) for m in _BOTH.finditer(clean)}
    if len(both) == 1:
        value = both.pop()
        return _pair(value, value)
    return None


# -- the evolver's rewrite ---------------------------------------------------------------------------------
_HEADER = re.compile(
    r"(?:#+\s*|\*\*\s*)*(?:the\s+)?(?:rewritten|new|created|evolved|revised)\s+(?:prompt|instruction)"
    r"(?:\s*#+)?\s*(?:\*\*)?(?:\s*\bis\b)?\s*[:：]?\s*(?:\*\*)?\s*"
    # Korean: "#재작성된 프롬프트#:", "다시 쓴 프롬프트:", "#새로 만든 프롬프트#:", "**새 지시문:**"
    r"|(?:\*\*\s*)?#?\s*(?:다시\s*쓴|재작성된|새로\s*만든|새로\s*작성한|새|변형된)\s*(?:프롬프트|지시문)\s*#?\s*"
    r"(?:\*\*)?\s*[:：]?\s*(?:\*\*)?\s*",
    re.I,
)
_PREAMBLE = re.compile(
    r"^\s*(?:sure|certainly|of course|okay|ok|here(?:'s| is| are)|below is|absolutely|great)\b[^\n]*?"
    r"(?::\s*(?:\n|$)|\n)"
    # Korean: whole words only ("네트워크", "네 가지" and "물론적" are not preambles); "다음은 ..." and
    # "여기 ..." only as a line ending in a colon, or as a sentence naming the rewrite (below).
    r"|^\s*(?:(?:물론(?:입니다|이죠|이에요)?|좋습니다|알겠습니다)(?![가-힣])|네(?=\s*[,.!]))[^\n]*?(?::\s*(?:\n|$)|\n)"
    r"|^\s*(?:다음은|여기|아래는)[^\n]*?[:：]\s*(?:\n|$)"
    # ... or as a sentence that announces the rewrite: "다음은 더 복잡하게 바꾼 프롬프트입니다."
    r"|^\s*(?:다음은|여기|아래는)[^\n]*?(?:프롬프트|지시문|버전|질문)(?:입니다|이에요|예요)[.!]?\s*\n",
    re.I,
)
_TRAILER = re.compile(
    # Another "#Section#:" marker after the rewrite ("#Explanation#:", "#설명#:", "#Reasoning#:"): the prompt's
    # own format marks sections with "#...#", so the model marks its next section the same way, and only
    # "#Input#" (split off later) belongs to the rewrite. Whatever the section is called, it is not the prompt.
    r"\n\s*(?:\*\*)?#(?!\s*(?:input|입력)\s*#)[^#\n]{1,40}#\s*(?:\*\*)?\s*[:：].*\Z|"
    # "Explanation:" (with the colon: "Explain ..." is part of the instruction). What an evolver's reply explains
    # is its rewrite, so such a label always opens a remark. A "Note:" / "참고:" only says the text is an aside,
    # not whose: a task may carry a note on its data ("참고: 응우옌 반 민은 ... 공무원이었음", a seed task), so a
    # note goes only when it speaks of the rewrite (_is_remark, below).
    r"\n\s*(?:[※†▶]\s*)?(?:\*\*)?(?:(?:explanation|rationale|changes made|설명|변경\s*사항)(?:\s*\*\*)?\s*[:：]|"
    r"(?:this (?:rewritten|new|revised|created|evolved) (?:prompt|instruction|version)|"
    # "This version adds ...": only with a verb that describes the rewrite.
    r"this (?:version|prompt|instruction) (?:adds|introduces|requires|makes|increases|keeps|now|narrows|expands|"
    r"builds|focuses|asks)|"
    # After a blank line: a first-person note on the rewrite, "The new prompt ...", "위 프롬프트는 ...".
    r"(?<=\n)\s*(?:I(?:'ve| have)? (?:made(?! [$€£₩\d])|added|changed|modified|introduced|included|rewrote|replaced|expanded|"
    r"narrowed|kept|increased)|the (?:rewritten|new|revised|created) (?:prompt|instruction|version) "
    r"(?:adds|introduces|requires|makes|increases|now|asks|is)|위 (?:프롬프트|지시문)(?:은|는)|"
    # ... a paragraph on what rewriting it this way does ("이렇게 재작성하면 질문이 더 구체적이 되어 ...",
    # "By rewriting it this way, ..."), and a closing pleasantry ("도움이 되셨길 바랍니다!", "Hope this helps!"):
    # the model talking to the user about its rewrite, never part of an instruction for another model.
    r"이렇게\s*(?:재작성|다시\s*(?:쓰|작성)|바꾸|바꿔|수정|고치|고쳐|변경|작성)\S*|(?:by\s+)?(?:rewriting|rephrasing|"
    r"revising)\s+(?:it|the\s+prompt)\s+(?:this|that)\s+way|(?:I\s+)?hope\s+(?:this|that|it)\s+helps|"
    r"도움이\s*(?:되셨|되었|됐|되)(?:길|기를|으면|으셨으면)\s*(?:바랍니다|바라요|좋겠습니다|합니다))|"
    r"in this (?:rewritten|revised|new) (?:prompt|version|instruction)|"
    r"이 (?:지시문은|프롬프트는|재작성된|다시 쓴|새 지시문은|새 프롬프트는|버전은|버전에서는))\b).*\Z",
    re.I | re.S,
)
# A reply that declines instead of rewriting: short, no header, opening with an apology or "I can't".
_DECLINE = re.compile(r"\A\W*(?:I['’]?m sorry|sorry|I apologi[sz]e|I (?:can(?:no|['’])t|am unable|won['’]t)|"
                      r"As an AI|죄송(?:합니다|하지만)|(?:저는\s*)?(?:이\s*)?요청[^\n]{0,20}(?:수\s*없))", re.I)
# A reply that says the prompt needs no rewrite ("The given prompt is already sufficiently complex, so I don't
# think it needs to be rewritten", "주어진 프롬프트가 이미 충분히 구체적이어서 바꿀 필요는 없어 보여요") is about the
# prompt, in the third person: it declines, it is not an instruction.
_ABOUT_PROMPT = re.compile(r"(?:the|this)\s+(?:given\s+|original\s+|current\s+)?(?:prompt|instruction)|"
                           r"(?:주어진|원래|기존|이)\s*(?:프롬프트|지시문)", re.I)
_NO_REWRITE = re.compile(
    r"(?:no\s+need|need\s*n['’]?t|does\s*n['’]?t\s+need|do\s*n['’]?t\s+(?:think|believe)\s+it\s+needs|not\s+necessary|"
    r"unnecessary)\s+(?:to\s+)?(?:be\s+)?(?:rewrit|rewrot|chang|modif|complicat|made|mak|revis)"
    r"|already\s+(?:\w+\s+)?(?:complex|complicated|challenging|difficult|detailed|specific|sufficient)"
    r"|(?:바꿀|수정할|변경할|다시\s*쓸|재작성할|고칠|복잡하게\s*(?:만들|바꿀))\s*필요(?:는|가|도)?\s*없"
    r"|이미\s*(?:충분히|꽤|상당히)"
    r"|no\s+(?:rewrite|rewriting|revision|changes?)\s+(?:is\s+|are\s+)?(?:needed|necessary|required)"
    r"|(?:재작성|수정|변경)(?:이|은|할\s*필요)?\s*(?:불필요|필요\s*없)", re.I)
# An aside wholly in parentheses ("(No rewrite needed - the original prompt is already sufficiently
# complex.)") is the model talking to the user, even under the header: models put such remarks in
# parentheses, and an instruction is never one. It is read like a reply with no header.
_ASIDE = re.compile(r"\A\([^()]*\)\Z")
# A reply that answers the prompt instead of rewriting it ("복리란 ... 계산 방식입니다. ... 차이가 커집니다.")
# gives no instruction. An instruction asks for something: an imperative ("설명하세요", "계산하시오"), a
# question ("무엇인가요?") or a request ("알고 싶습니다", "부탁드립니다", "필요합니다"). Korean marks the mood
# in the sentence ending, so Korean text with no header whose every sentence and line ends in a plain or
# formal declarative ("-다", "-니다") and that holds no request word is an answer, not an instruction - when
# it is prose of two sentences or more: one declarative sentence may state a task ("다음 문장을 영어로
# 번역합니다"), and a one-line decline or "no rewrite needed" is read above.
# English does not mark mood in an ending - "Compare ..." and "Compounding is ..." differ only by what the
# first word is - so in English the first word decides: a statement opens with its subject, a determiner or a
# pronoun ("The net present value is ...", "A positive NPV means ...", "It ..."), where an instruction opens with
# its verb ("Explain ...", "Calculate ...") or asks ("What ...?"). English prose of two sentences or more, with no
# header, every sentence opening with such a subject and nothing in it that addresses the reader or sets a task
# (a question, you/your, please, must/should/need to, "the following", "given", "task", a first-person
# request), is an answer too. A scenario that then asks ("A company has ... . Calculate ...") has a verb-first
# sentence; one that only states facts asks nothing a model could answer.
_KO_DECLARATIVE = re.compile(r"[가-힣](?:니다|다)[.!]?[)\]」』\"']?$")
_KO_REQUEST = re.compile(r"바랍니다|바라요|부탁|주십시오|주세요|궁금|싶습니다|원합니다|필요합니다|요청합니다|감사하겠|"
                         r"(?:야|어야|아야|여야)\s*합니다|하십시오|하시오")
_SENTENCE_END = re.compile(r"\n+|(?<=[.!?])\s+")


_EN_SUBJECT_FIRST = re.compile(r"^[\"'“‘(]*(?:the|a|an|this|that|these|those|it|its|they|their|there|such|each|every|"
                               r"both|most|many|some|no)\b", re.I)
_EN_ASKS = re.compile(r"\?|\b(?:you|your|yours|please|must|should|need\s+to|needs\s+to|has\s+to|have\s+to|"
                      r"(?:is|are)\s+required\s+to|task|following|below|above|given|i|me|my|we|us|our)\b", re.I)


def _answers_instead(text: str) -> bool:
    """Declarative prose with no request in it (Korean by its endings, English by its subjects): the prompt
    answered, not rewritten."""
    sentences = [s.strip() for s in _SENTENCE_END.split(text) if s.strip()]
    if len(sentences) < 2 or "?" in text:
        return False
    if re.search(r"[가-힣]", text):
        return not _KO_REQUEST.search(text) and all(_KO_DECLARATIVE.search(s) for s in sentences)
    return (bool(re.search(r"[A-Za-z]", text)) and not _EN_ASKS.search(text)
            and all(_EN_SUBJECT_FIRST.match(s) for s in sentences))


# -- the model's remarks after the rewrite ----------------------------------------------------------------------
# After the rewritten instruction a model often adds a paragraph of its own: what it did ("I added a budget
# constraint", "제약을 추가했습니다", "위와 같이 다시 작성하였습니다"), what the rewrite does ("This version adds
# ...", "이렇게 하면 난이도가 높아집니다"), a note ("(참고: ...)", "Note: ..."), or a word to the user ("Let me know
# if you'd like changes", "도움이 되셨길 바랍니다"). Such a paragraph is ABOUT the prompt; a second paragraph of
# the instruction itself (constraints, a list of requirements, data) is part of the task. Two things tell them
# apart, and both must hold for a trailing paragraph to go:
#  1. it asks nothing: no question, no imperative or request (Korean: no "-세요/-시오/주세요/바랍니다" ending,
#     every sentence a declarative; English: every sentence opens with a subject - "I", "This", "The", "It" -
#     or is an offer to the user, never with a verb as "Use ...", "Include ..." do), so it gives the model that
#     will answer the instruction nothing to do;
#  2. it speaks of the prompt or of the rewriting: it points at the rewrite ("this version", "the original
#     prompt", "위와 같이", "이렇게 하면", "이 프롬프트"), narrates the model's own editing act (English "I added
#     ...", Korean a past editing verb with no subject of its own - Korean drops the "I", while a fact in the
#     task has its subject: "회사는 인력을 추가했습니다"), is labelled a note, or speaks to the user (offers of
#     further changes, pleasantries).
# A parenthesised paragraph is read without its parentheses. Only the instruction is searched: text after an
# "#Input#" marker is data copied for the task and keeps whatever it says; and the first paragraph (the rewrite)
# never goes.
_NOTE_LABEL = re.compile(r"^\W{0,3}(?:note|notes|comment|참고|주|노트|비고)\s*(?:\*\*)?\s*[:：]", re.I)
_EN_ABOUT_REWRITE = re.compile(
    r"\bthis\s+(?:version|rewrite|revision|prompt|instruction|way)\b|"
    r"\bthe\s+(?:original|given|rewritten|new|revised|updated|evolved|created)\s+(?:prompt|instruction|question|version|task)\b|"
    r"\b(?:prompt|instruction)\s+above\b|\bthe\s+above\s+(?:prompt|instruction|version)\b|"
    r"\bi(?:['’]ve|\s+have)?\s+(?:made(?!\s+[$€£₩\d])|added|changed|modified|introduced|included|rewrote|rewritten|replaced|expanded|"
    r"narrowed|kept|increased|incorporated|specified|turned|framed|reframed|tightened|broadened|deepened|adjusted)\b|"
    # To the user about the rewrite: "Hope this helps!", "Let me know if you'd like any further changes." (A bare
    # "let me know" is not enough: a drafted letter in the task may end with one.)
    r"\bhope\s+(?:this|that|it)\s+helps\b|"
    r"\b(?:further|more|other)\s+(?:changes|adjustments|modifications|edits|tweaks|revisions)\b", re.I)
_EN_REMARK_FIRST = re.compile(
    r"^[\"'“‘(]*(?:i|i['’](?:ve|d|ll|m)|this|that|these|those|the|it|it['’]s|its|my|we|by|in|with|here|hope|note|also|"
    r"overall|now|both|each|let\s+me|feel\s+free|if\s+you|would\s+you|please\s+let)\b", re.I)
_KO_ABOUT_REWRITE = re.compile(
    r"이렇게\s*(?:하면|하여|해서|함으로써|바꾸|바꿔|재작성|다시|작성|수정|고치|고쳐|변경|구성|만들|하니)|위와\s*같이|"
    r"(?:위|위의|이|원래|기존|주어진|원본|재작성된|새|새로운|다시\s*쓴|바뀐)\s*(?:프롬프트|지시문|버전)")
_KO_TO_USER = re.compile(r"도움이\s*(?:되셨|되었|됐|되)(?:길|기를|으면)|(?:더|추가로|다른|추가)\s*(?:수정|변경|조정|보완)\S*"
                         r"\s*(?:이|을|가)?\s*(?:필요하시|원하시)")
_EN_TO_USER = re.compile(r"^(?:let\s+me\s+know|feel\s+free|would\s+you\s+like|if\s+you|please\s+let)\b.*\b(?:"
                         r"(?:further|more|other|any)\s+(?:changes|adjustments|modifications|edits|tweaks|revisions)|"
                         r"(?:another|a\s+different|an\s+alternative)\s+(?:version|variant|rewrite|wording))\b", re.I)
# The model's own editing act, in the past: "추가했습니다", "높였습니다", "다시 작성하였습니다", "더했어요".
_KO_EDITED = re.compile(r"(?:추가|반영|보완|강화|구체화|수정|변경|재작성|작성|포함|명시|세분화|확장|심화|조정|제한|요구)"
                        r"(?:했|하였|시켰|해\s*두었|해\s*놓았)|높였|늘렸|넣었|바꿨|바꾸었|더했|좁혔|넓혔|덧붙였|만들었")
_KO_ASKS = re.compile(r"(?:세요|시오|십시오|주세요|해라|하라|할\s*것|바랍니다|바라요|봅시다|합시다)[.!)\]」』\"']*$")
# A Korean statement ends in a declarative ("-니다", "-다", "-요") or, in notes, a nominal ending ("-음", "-함").
_KO_STATEMENT = re.compile(r"(?:니다|다|요|죠|음|함|임|됨)[.!)\]」』\"']*$")


def _own_subject(words: str) -> bool:
    """Does this Korean text name a subject of its own - a noun with a topic or subject particle ("차주는",
    "응우옌 반 민은", "회사가")? Korean drops the "I", so the model narrating its act names none; a fact in the
    task does. Adnominal endings ("금지라는", "하는", "된") and adverbs ("같이", "깊이") are not particles."""
    for token in re.findall(r"[^\s,.]+", words):
        if (re.search(r"[가-힣A-Za-z0-9)](?:은|는|께서)$", token) and len(token) >= 2
                and not re.search(r"(?:[라다하되있없던]는|[한된던]은)$", token)):
            return True
        if re.search(r"[가-힣]{2,}[이가]$", token) and not re.search(r"(?:같|깊|많|높|없|굳|함께)이$", token):
            return True
    return False


def _is_remark(paragraph: str) -> bool:
    """A paragraph after the rewrite in which the model talks about the prompt or its rewriting (see above)."""
    p = paragraph.strip()
    if re.fullmatch(r"\([^()]*\)", p):
        p = p[1:-1].strip()  # an aside in parentheses: read what it says
    noted = bool(_NOTE_LABEL.match(p))
    p = _NOTE_LABEL.sub("", p, count=1).strip()
    sentences = [s.strip() for s in _SENTENCE_END.split(p) if s.strip()]
    if not sentences:
        return False
    # A word to the user about the rewrite ("더 수정이 필요하시면 말씀해 주세요", "Let me know if you'd like any
    # further changes") may ask something - of the user, not of the model that will answer the instruction.
    to_user = [s for s in sentences if _KO_TO_USER.search(s) or _EN_TO_USER.search(s)]
    rest = [s for s in sentences if s not in to_user]
    if re.search(r"[가-힣]", p):
        if any("?" in s or _KO_ASKS.search(s) or _KO_REQUEST.search(s) or not _KO_STATEMENT.search(s) for s in rest):
            return False
        edited = any((m := _KO_EDITED.search(s)) and not _own_subject(s[:m.start()]) for s in rest)
        # A note ("참고:") that asks nothing and names no subject of its own is the model's aside; one about
        # something in the task ("참고: 응우옌 반 민은 ... 공무원이었음") is data.
        noted = noted and not any(_own_subject(s) for s in rest)
        return bool(noted or edited or to_user or any(_KO_ABOUT_REWRITE.search(s) for s in rest))
    if any("?" in s or not _EN_REMARK_FIRST.match(s) for s in rest):
        return False
    # An English note that asks nothing is read as the model's aside, as it always was ("Note: The rewritten
    # prompt adds ...", "Note: the colour requirement makes it harder."): English shows no dropped subject.
    return bool(noted or to_user or _EN_ABOUT_REWRITE.search(p))


def _without_remarks(text: str) -> str:
    """The instruction without the model's remarks after it: trailing paragraphs, then trailing lines, that
    are remarks go, from the end; the first paragraph or line never does."""
    m = _INPUT.search(text)  # an "#Input#" section is data: not searched (see above)
    head, tail = (text[:m.start()], text[m.start():]) if m else (text, "")
    paragraphs = re.split(r"\n[ \t]*\n", head.strip())
    while len(paragraphs) > 1 and _is_remark(paragraphs[-1]):
        paragraphs.pop()
    lines = paragraphs[-1].split("\n")
    while len(lines) > 1 and _is_remark(lines[-1]):
        lines.pop()
    paragraphs[-1] = "\n".join(lines)
    return "\n\n".join(paragraphs).strip() + tail


_INPUT = re.compile(r"\n?\s*(?:\*\*)?#\s*(?:Input|입력)\s*#\s*[:：]?\s*(?:\*\*)?\s*", re.I)
_GIVEN = re.compile(r"^#\s*(?:given prompt|주어진 프롬프트)\s*#\s*[:：]?", re.I)
_QUOTES = [('"', '"'), ("'", "'"), ("“", "”"), ("‘", "’"), ("「", "」"), ("『", "』"), ("«", "»"), ("`", "`")]


def _is_header(text: str, m: re.Match) -> bool:
    """A header opens the rewrite: it ends in a colon ("#Rewritten Prompt#:", "Rewritten Prompt:"), or it is
    marked (`#`, `**`) and opens its line, or it stands on a line of its own. A header name inside a sentence
    ("a classic example of a "Created Prompt#" in the context of ...", "a new instruction set", "this rewritten
    prompt adds ...") is the model talking about the prompt's sections: cutting there would slice a sentence."""
    found = m.group(0)
    if any(c in found for c in ":："):
        return True
    line_start = text.rfind("\n", 0, m.start()) + 1
    starts_line = not text[line_start:m.start()].strip(" \t#*>-")
    line_end = text.find("\n", m.start())
    ends_line = "\n" in found or not text[m.end():len(text) if line_end < 0 else line_end].strip()
    if starts_line and any(c in found for c in "#*"):
        return True
    # "#Rewritten Prompt#" marked on both sides, not in quotes, is the marker itself ("Sure! #Rewritten Prompt#
    # Explain ..."); a name marked on one side or quoted ("a "Created Prompt#" in the context") is talked about.
    quotes = "\"'“”‘’「」"
    if (re.match(r"#+\s*\S[^#]*#", found) and (m.start() == 0 or text[m.start() - 1] not in quotes)
            and not text[m.end():m.end() + 1] in quotes and quotes.find(found.rstrip()[-1:]) < 0):
        return True
    return starts_line and ends_line


# A header name used as a word inside prose ("a "Created Prompt#"", "the #Rewritten Prompt# section"): the
# evolving prompt's section markers, which only a model talking about the prompt writes in a sentence.
_HEADER_NAME = re.compile(r"#\s*(?:given|rewritten|created)\s+prompt|(?:given|rewritten|created)\s+prompt\s*#", re.I)


def _asks_nothing(paragraph: str) -> bool:
    """No question, no imperative or request: every sentence a statement (Korean by its ending, English by
    opening with its subject). Such text gives the model that will answer an instruction nothing to do."""
    sentences = [x.strip() for x in _SENTENCE_END.split(paragraph.strip().strip("()")) if x.strip()]
    if not sentences or any("?" in x for x in sentences):
        return False
    if re.search(r"[가-힣]", paragraph):
        return not any(_KO_ASKS.search(x) or _KO_REQUEST.search(x) or not _KO_STATEMENT.search(x) for x in sentences)
    return all(_EN_REMARK_FIRST.match(x) for x in sentences)


def _quote_role(text: str, i: int) -> int:
    """+1 when the quote at text[i] opens (after a space, a bracket or the start, before a non-space), -1 when it
    closes, 0 for an apostrophe (a straight single quote between two letters: "company's")."""
    before = text[i - 1] if i > 0 else " "
    after = text[i + 1] if i + 1 < len(text) else " "
    if text[i] == "'" and before.isalnum() and after.isalnum():
        return 0
    return 1 if (before.isspace() or before in "([{:,=<") and not after.isspace() else -1


def _wraps(inner: str, left: str, right: str) -> bool:
    """Can `left` + inner + `right` be one pair of quotes around the whole text? Quotes of the same kind inside
    must pair up on their own: none closes before it opened ('"Bid" versus "ask"' is two quoted words, not a
    wrap; '"Format the dict {"rate": 0.05}"' is a wrap)."""
    if left == "`":
        return "`" not in inner  # backticks inside belong to a fence or to code, not to a quoted rewrite
    depth = 0
    for i, c in enumerate(inner):
        if left == right:
            if c != left:
                continue
            step = _quote_role(inner, i)
        else:
            step = 1 if c == left else -1 if c == right else 0
        depth += step
        if depth < 0:
            return False
    return True


def _strip_quotes(text: str) -> str:
    """The text without one pair of quotes around all of it, told by structure: the quotes inside (a JSON
    dict, a quoted term) pair up on their own."""
    for left, right in _QUOTES:
        if len(text) >= 2 and text.startswith(left) and text.endswith(right) and _wraps(text[len(left):-len(right)],
                                                                                        left, right):
            return text[len(left):-len(right)].strip()
    return text


def _unquote(text: str) -> str:
    """A rewrite the model put in quotes, by structure: the quote that opens the text and the quote that ends
    a line and pairs with it (`_wraps`). Text after that closing quote, past a blank line, is outside the
    rewrite: it goes when it asks nothing (a remark, "This adds a format constraint."). An opening double or
    curly quote never closed, with no other quote of its kind in the text, goes alone (a single quote may be an
    apostrophe: "'Tis"). An "#Input#" section keeps its own."""
    m = _INPUT.search(text)
    head, tail = (text[:m.start()], text[m.start():]) if m else (text, "")
    head = head.strip()
    for left, right in _QUOTES:
        if not head.startswith(left):
            continue
        for j in [k for k in range(len(left), len(head)) if head.startswith(right, k)]:
            after = head[j + len(right):]
            if after.split("\n", 1)[0].strip() or not _wraps(head[len(left):j], left, right):
                continue  # the closing quote ends its line, and what it closes pairs up inside
            rest = after.strip()
            if not any(c.isalnum() for c in head[:j]):
                break
            if not rest or (re.match(r"[ \t]*\n[ \t]*\n", after) and _asks_nothing(rest)):
                return head[len(left):j].strip() + tail
            break
        if (left not in "'`" and head.count(left) == 1 and head.count(right) == (1 if left == right else 0)
                and any(c.isalnum() for c in head)):
            return head[len(left):].strip() + tail  # opened, never closed
        return text
    return text


def _evolved_from_json(obj: dict) -> tuple[str, str | None]:
    instruction = _lookup(obj, "instruction", "rewritten_prompt", "rewritten prompt", "created_prompt", "prompt",
                          "new_prompt", "new_instruction", "evolved_instruction", "지시문", "프롬프트")
    given_input = _lookup(obj, "input", "입력")
    if not isinstance(instruction, str):
        return "", None
    return instruction.strip(), given_input.strip() if isinstance(given_input, str) and given_input.strip() else None


def read_evolved(text: str | None) -> tuple[str, str | None]:
    """(instruction, input or None) from the evolver's reply; the instruction is "" when nothing usable.

    Unwraps a code fence, takes what follows the last header (models echo "#Given Prompt#" first; with
    nothing after it, the last non-empty piece between headers), then strips a preamble ("Sure! Here's
    ...", "물론입니다. ..."), a trailing explanation ("Explanation: ...", "This rewritten prompt adds ..."),
    quotes, and splits off an "#Input#:" / "#입력#:" section."""
    if not isinstance(text, str):
        return "", None
    text = text.replace("\r\n", "\n").strip()
    if text.startswith(("{", "```json")):
        obj = json_object(text)
        if obj is not None:
            return _evolved_from_json(obj)
    text = _unfence(text).strip()
    if not _HEADER.match(text):
        # "Sure, here is the rewritten prompt:" ends in a header: drop the preamble first, or it would be
        # the last non-empty piece.
        text = _PREAMBLE.sub("", text, count=1).strip()
    headers = [m for m in _HEADER.finditer(text) if _is_header(text, m)]
    if headers:
        cuts = [0] + [i for m in headers for i in (m.start(), m.end())] + [len(text)]
        pieces = [text[cuts[i]:cuts[i + 1]].strip() for i in range(0, len(cuts), 2)]
        # With nothing after the last header, the last piece that follows a header (a repeated block) is the
        # rewrite; what stands before the first header is a preamble announcing it ("주어진 프롬프트를 더
        # 복잡하게 만들어 보겠습니다.\n\n#Rewritten Prompt#:"), never the instruction: then there is none.
        text = next((p for p in reversed(pieces[1:]) if p), "")
    elif _HEADER_NAME.search(text):
        # It names the prompt's section markers in its sentences and gives none as a header: a remark on the
        # prompt, not a rewrite that can be unwrapped cleanly (issue 23: "그렇다.\nThe given prompt is a classic
        # example of a "Created Prompt#" ..."). Unreadable, never a slice or a line of the remark.
        return "", None
    text = _PREAMBLE.sub("", text, count=1).strip()
    text = _TRAILER.sub("", text).strip()
    text = _without_remarks(text)
    if (not headers or _ASIDE.match(text)) and len(text) < 300 and "\n" not in text and (
            _DECLINE.match(text.strip("()")) or (_ABOUT_PROMPT.search(text) and _NO_REWRITE.search(text))):
        return "", None
    if not headers and _answers_instead(text):
        return "", None
    lines = text.split("\n")
    if all(line.lstrip().startswith(">") for line in lines if line.strip()):
        text = "\n".join(re.sub(r"^\s*>\s?", "", line) for line in lines).strip()  # a markdown blockquote
    text = re.sub(r"\n\s*(?:-{3,}|\*{3,}|_{3,})\s*\Z", "", text).strip()  # a rule left before a trailer
    text = _GIVEN.sub("", text).strip()
    text = _unfence(_unquote(_strip_quotes(text))).strip()
    input_text: str | None = None
    parts = _INPUT.split(text, maxsplit=1)
    if len(parts) == 2:
        # Each section may have its own fence or quotes: they are delimiters, as around the whole reply.
        text, input_text = _unfence(parts[0].strip()).strip(), _strip_quotes(_unfence(parts[1].strip()).strip())
    return _strip_quotes(text), input_text


# -- generated instruction lists (evolab.seeds.craft's grow prompt) ------------------------------------------
# An item starts with a number ("1.", "2)", "(3)", "Task 4:", "과제 5:", "### 6."), or, in a list with no
# numbers, a bullet. A bold title before the task ("**Budgeting**: Plan ...") is a label, not the task.
_THINK = re.compile(r"<think>.*?(?:</think>|\Z)", re.S | re.I)
_ITEM_LABEL = r"(?:task|instruction|prompt|question|과제|지시문?|질문|문제|명령)"
_NUMBERED = re.compile(r"^\s*(?:#{1,6}\s*)?(?:\*\*)?(?:" + _ITEM_LABEL + r"\s*#?\s*\d{1,3}\s*(?:[.):：\]-]|번)?"
                       r"|\(\d{1,3}\)|\d{1,3}\s*(?:[.):：\]]|번[.)]?))(?:\*\*)?(?=\s|$)\s*(.*)$", re.I)
_BULLET = re.compile(r"^\s*[-*•·]\s+(.*)$")
_ITEM_INPUT = re.compile(r"^\s*(?:#\s*)?(?:input|입력)(?:\s*data|\s*데이터)?\s*#?\s*[:：]\s*(.*)$", re.I)
_ITEM_OUTPUT = re.compile(r"^\s*(?:#\s*)?(?:output|answer|response|solution|출력|답변?|정답|응답)\s*#?\s*[:：]", re.I)
_ITEM_PREFIX = re.compile(r"^\s*(?:new\s+)?" + _ITEM_LABEL + r"\s*[:：]\s*", re.I)
_BOLD_TITLE = re.compile(r"^\s*\*\*([^*\n]{1,80}?)\*\*\s*(?:[:：\-–—]\s*)?(.*)$")


def _clean_item(text: str) -> str:
    text = text.strip()
    m = _BOLD_TITLE.match(text)
    if m and m.group(2).strip():
        text = m.group(2)  # "**Title**: the task" -> the task
    elif m:
        text = m.group(1)  # the whole item is bold
    text = re.sub(r"\*\*|__|`", "", text)
    text = _ITEM_PREFIX.sub("", text).strip()
    return _strip_quotes(text.strip()).strip()


def _json_items(text: str) -> list[tuple[str, str]] | None:
    body = _unfence(text).strip()
    value: Any = None
    if body.startswith("["):
        try:
            value = json.loads(body)
        except (ValueError, RecursionError):
            return None
    else:
        obj = json_object(text) if body.startswith("{") else None
        value = obj and _lookup(obj, "instructions", "tasks", "items", "prompts")
    if not isinstance(value, list):
        return None
    out = []
    for item in value:
        if isinstance(item, str):
            out.append((item.strip(), ""))
        elif isinstance(item, dict):
            instruction = _lookup(item, "instruction", "task", "prompt")
            given = _lookup(item, "input")
            if isinstance(instruction, str):
                out.append((instruction.strip(), given.strip() if isinstance(given, str) else ""))
    return [(i, x) for i, x in out if i]


def read_instruction_list(text: str | None) -> list[tuple[str, str]]:
    """The new instructions a reply lists, as (instruction, input) pairs in order; [] when the reply holds no list
    (a refusal, a paragraph): a lone sentence is never taken for a task. An item runs on over its following lines
    (its own sub-points) until the next item, a blank line followed by unmarked prose (a closing remark), or the
    end; an "Input:"/"입력:" line starts the item's input. A JSON array (or {"instructions": [...]}) is read too."""
    text = _THINK.sub("", (text or "").replace("\r\n", "\n").replace("\r", "\n"))
    from_json = _json_items(text)
    if from_json is not None:
        return from_json
    lines = text.split("\n")
    numbered = any(_NUMBERED.match(line) for line in lines)
    items: list[list[list[str]]] = []  # per item: [instruction lines, input lines]
    blank_before = answered = False
    for line in lines:
        m = _NUMBERED.match(line) if numbered else _BULLET.match(line)
        if m:
            items.append([[m.group(1)], []])
            blank_before = answered = False
            continue
        if not line.strip():
            blank_before = True
            continue
        if _ITEM_OUTPUT.match(line):
            answered = True  # an example answer ("Output: ...") is not part of the task
        if not items or answered or line.lstrip().startswith("```"):
            continue
        if blank_before and not line[:1].isspace() and not _ITEM_INPUT.match(line) and not (
                len(items[-1][0]) == 1 and not items[-1][0][0].strip()):  # a header item's text may follow a blank
            break  # prose after the list: a closing remark
        blank_before = False
        given = _ITEM_INPUT.match(line)
        if given:
            items[-1][1].append(given.group(1))
        elif items[-1][1]:
            items[-1][1].append(line)
        else:
            items[-1][0].append(line)
    out = []
    for instruction_lines, input_lines in items:
        first = [_clean_item(instruction_lines[0])] if instruction_lines[0].strip() else []
        instruction = "\n".join(first + [ln.rstrip() for ln in instruction_lines[1:]]).strip()
        instruction = re.sub(r"\*\*|__", "", instruction)
        if instruction:
            out.append((instruction, "\n".join(input_lines).strip()))
    return out


# -- seed tags (evolab.seeds.craft's tag prompt) ------------------------------------------------------------
_TAG_SKILL = re.compile(r"^\s*[-*#]*\s*(?:skill|category|스킬|기술|능력|분야|범주|카테고리)\s*[:：=]\s*(.+?)\s*$", re.I | re.M)
_TAG_DIFFICULTY = re.compile(r"^\s*[-*#]*\s*(?:difficulty|난이도)[^:：=\n]{0,20}[:：=]\s*(.+?)\s*$", re.I | re.M)
_NEW_SKILL_WORDS = {"other", "new", "none", "기타", "새 스킬", "(new)", "new skill"}


def read_tag(text: str | None, skills: Iterable[str] = ()) -> dict | None:
    """{"skill", "new_skill" (True: not in `skills`, a proposal), "difficulty" (1-10 or None)} from a tagging
    reply (JSON {skill, new_skill, difficulty} or "Skill: ...\\nDifficulty: N" lines, English or Korean); None when
    neither the skill nor the difficulty can be read. A skill is matched to the list ignoring case and spaces."""
    known = {_key(s): s for s in skills}
    text = _normalise(_THINK.sub("", text or ""))
    obj = json_object(text)
    skill: Any = None
    difficulty: float | None = None
    if obj is not None:
        skill, proposal = _lookup(obj, "skill", "category"), _lookup(obj, "new_skill", "proposed_skill")
        if (not isinstance(skill, str) or _key(skill) in _NEW_SKILL_WORDS or not skill.strip()) and \
                isinstance(proposal, str) and proposal.strip():
            skill = proposal
        difficulty = _in_range(_number(_lookup(obj, "difficulty", "score")), 1, 10)
    else:
        m = _TAG_SKILL.search(text)
        skill = m.group(1) if m else None
        d = _TAG_DIFFICULTY.search(text)
        difficulty = read_score(d.group(1), 1, 10) if d else None
    if isinstance(skill, str):
        skill = skill.strip().strip("\"'“”‘’").strip()
        skill = None if not skill or _key(skill) in _NEW_SKILL_WORDS else skill
    else:
        skill = None
    if difficulty is not None and not float(difficulty).is_integer():
        difficulty = None  # the question asks for a whole number: 6.5 is a hedge
    if skill is None and difficulty is None:
        return None
    matched = known.get(_key(skill)) if skill else None
    return {"skill": matched or skill, "new_skill": bool(skill) and matched is None,
            "difficulty": int(difficulty) if difficulty is not None else None}


# -- revised templates from an optimizer model (evolab/audit/tuning.py) --------------------------------------------
_FENCED_BLOCK = re.compile(r"^[ \t]*```[\w+-]*[ \t]*\n(.*?)\n[ \t]*```[ \t]*$", re.S | re.M)
_THINKING = re.compile(r"<think>.*?(?:</think>|\Z)", re.S | re.I)  # a reasoning model's preamble


def _candidate_from_json(item: Any) -> dict[str, str] | None:
    if isinstance(item, str):
        return {"template": item, "rationale": ""} if item.strip() else None
    if not isinstance(item, dict):
        return None
    template = _lookup(item, "template", "prompt", "text", "revised_template")
    rationale = _lookup(item, "rationale", "reason", "why", "explanation")
    if not isinstance(template, str) or not template.strip():
        return None
    return {"template": template, "rationale": rationale.strip() if isinstance(rationale, str) else ""}


def read_template_candidates(text: str | None) -> list[dict[str, str]] | None:
    """Revised templates from an optimizer's reply: JSON {"candidates": [{"rationale", "template"}]} (or a bare
    list, or "templates"), else each fenced code block as one template with the line before it as its rationale.
    None when no template can be read; the texts are returned as written (placeholders are checked by the caller)."""
    text = _THINKING.sub("", text or "")
    items: Any = None
    body = _unfence(text).strip()
    if body.startswith("["):
        try:
            items = json.loads(body)
        except (ValueError, RecursionError):
            items = None
    if items is None:
        obj = json_object(text)
        if obj is not None:
            items = _lookup(obj, "candidates", "templates", "revisions")
            if items is None and _candidate_from_json(obj):
                items = [obj]
    if isinstance(items, list):
        found = [c for c in (_candidate_from_json(i) for i in items) if c]
        return found or None
    blocks = list(_FENCED_BLOCK.finditer(text))
    found = []
    for m in blocks:
        before = [line.strip() for line in text[:m.start()].splitlines()
                  if line.strip() and not line.strip().startswith("```")]
        if m.group(1).strip():
            found.append({"template": m.group(1), "rationale": before[-1] if before else ""})
    return found or None
