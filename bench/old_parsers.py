"""The parsers evolab shipped before the readers of evolab/text/replies.py (commit 92462f9), kept here only so
bench/replies.py can show what the new readers fixed. Not used by evolab."""
from __future__ import annotations

import re

_NUMBER = r"(\d+(?:\.\d+)?)"
# Most explicit first: "Score: 7", "7/10", "7 out of 10", then the first bare number in range.
_PATTERNS = [
    re.compile(r"(?:score|rating|difficulty|점수|난이도)\s*(?:is|of|=|:|：)?\s*\**\s*" + _NUMBER, re.I),
    re.compile(_NUMBER + r"\s*(?:/|out of)\s*\d+", re.I),
    re.compile(r"\d+\s*점?\s*(?:만점에|만점 중|중에서|중)\s*" + _NUMBER),  # "10점 만점에 6점": the score is last
    re.compile(_NUMBER + r"\s*점"),
    # A bare number: not part of a word, a version or a decimal; a full stop or a Korean ending may follow
    # ("I rate it 7.", "8입니다").
    re.compile(r"(?<![A-Za-z0-9_.-])" + _NUMBER + r"(?![A-Za-z0-9_]|\.\d)"),
]


def parse_score(text: str, low: float, high: float) -> float | None:
    """The score in [low, high] found anywhere in the reply, or None."""
    for pattern in _PATTERNS:
        for m in pattern.finditer(text or ""):
            try:
                value = float(m.group(1))
            except ValueError:
                continue
            if low <= value <= high:
                return value
    return None


def parse_equal(text: str) -> bool | None:
    """True for Equal, False for Not Equal, None when the reply says neither."""
    low = (text or "").strip().lower()
    if re.search(r"\bnot\s+equal\b|\bunequal\b|\bnot the same\b|같지\s*않|다릅니다|다르다", low):
        return False
    if re.search(r"\bequal\b|\bthe same\b|같습니다|같다|동일", low):
        return True
    return None


_PAIR_NUMBER = r"(\d+(?:\.\d+)?)"
_PAIR_LABELS = re.compile(r"assistant\s*[12]\s*[:=]?|scores?\s*[:=]?|/\s*10\b|\*\*|#", re.IGNORECASE)


def parse_scores(reply: str | None) -> tuple[float, float] | None:
    """The two scores on the first non-empty line ("8 6", "8, 6", "Assistant 1: 8 Assistant 2: 6"),
    each within 0..10; None when the line does not hold exactly two such numbers."""
    if not reply:
        return None
    for line in reply.splitlines():
        if line.strip():
            first = line
            break
    else:
        return None
    numbers = re.findall(_PAIR_NUMBER, _PAIR_LABELS.sub(" ", first))
    if len(numbers) != 2:
        return None
    a, b = float(numbers[0]), float(numbers[1])
    if not (0 <= a <= 10 and 0 <= b <= 10):
        return None
    return a, b


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
