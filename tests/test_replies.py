"""The free-text readers (evolab/text/replies.py) on the corpus of realistic replies in tests/data/replies/.

Per reply kind and language the readers must read at least 99% of the corpus as a person would, and never
turn a reply a person cannot read into a value. On the first to fourth held-out corpora
(tests/data/replies_heldout/, replies_heldout2/, replies_heldout3/ and replies_heldout4/, all since used to fix
the readers) they must read at least 90%, again never inventing a value. The named
failures of the older parsers and the rules added for the held-out corpus are pinned one by one, and nasty
inputs must never make a reader raise."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from evolab.text.replies import read_equal, read_evolved, read_pair_scores, read_score

CORPUS = Path(__file__).parent / "data" / "replies"
KINDS = ["equality", "difficulty", "quality", "pairwise", "evolver"]


# Written by someone who never saw the readers; its misses were then used to fix them (by general rules only),
# so it is no longer held out. The unseen measure is the second held-out corpus, in bench/replies.py.
HELDOUT = Path(__file__).parent / "data" / "replies_heldout"
# The second held-out corpus, written the same way. It too has been used to fix the readers (the score line
# after reasoning, arithmetic and "7 or 8" hedges, Korean ranges in pairs, the evolver's Korean notes and
# asides, answers instead of rewrites), so it is no longer held out either: another regression floor.
HELDOUT2 = Path(__file__).parent / "data" / "replies_heldout2"
# The third held-out corpus, written the same way. Its misses have since been used to fix the readers (another
# "#Section#:" after the rewrite is not the prompt, "it depends" leaves the verdict open, a first impression
# overturned by "but"/"지만" gives its verdict after the turn, a spelled-out lone value, "Complexity:" as a
# label), so it is no longer held out either: another regression floor.
HELDOUT3 = Path(__file__).parent / "data" / "replies_heldout3"
# The fourth held-out corpus, written the same way. Its misses have since been used to fix the readers (a remark
# in parentheses after a lone value, "I'd say 3", "6 / 8", an English answer instead of a rewrite, a preamble
# before an empty header, and the model's remarks after the rewrite as a class), so it is no longer held out
# either: another regression floor.
HELDOUT4 = Path(__file__).parent / "data" / "replies_heldout4"
# The fifth, evolver replies only (issues 23 and 28: quoted rewrites whose text carries quotes, header names
# inside sentences), written before the fix and measured unseen (docs/reading-replies.md), then fixed.
HELDOUT5 = Path(__file__).parent / "data" / "replies_heldout5"
SEEDS = Path(__file__).parent.parent / "evolab" / "data"


def load(kind: str, corpus: Path = CORPUS) -> list[dict]:
    with open(corpus / f"{kind}.jsonl", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def read(kind: str, reply):
    """The reader for `kind`, its result in the corpus's `expected` form."""
    if kind == "equality":
        return read_equal(reply)
    if kind == "difficulty":
        return read_score(reply, 1, 10)
    if kind == "quality":
        return read_score(reply, 0, 5)
    if kind == "pairwise":
        value = read_pair_scores(reply)
        return None if value is None else [value[0], value[1]]
    instruction, input_text = read_evolved(reply)
    return {"instruction": instruction, "input": input_text}


def unreadable(kind: str, expected) -> bool:
    return expected["instruction"] == "" if kind == "evolver" else expected is None


def got_a_value(kind: str, got) -> bool:
    return got["instruction"] != "" if kind == "evolver" else got is not None


# -- the corpus ----------------------------------------------------------------------------------------------
def test_corpus_is_large_and_bilingual():
    total = 0
    for kind in KINDS:
        rows = load(kind)
        total += len(rows)
        assert len(rows) >= 30, kind
        for lang in ("en", "ko"):
            assert sum(r["lang"] == lang for r in rows) >= 15, (kind, lang)
        assert all(set(r) >= {"lang", "reply", "expected", "note"} for r in rows), kind
        assert any(unreadable(kind, r["expected"]) for r in rows), f"{kind}: no unreadable replies"
    assert total >= 150


@pytest.mark.parametrize("lang", ["en", "ko"])
@pytest.mark.parametrize("kind", KINDS)
def test_accuracy_per_kind_and_language(kind, lang):
    rows = [r for r in load(kind) if r["lang"] == lang]
    misses = [(r["reply"], r["expected"], got) for r in rows if (got := read(kind, r["reply"])) != r["expected"]]
    accuracy = 1 - len(misses) / len(rows)
    assert accuracy >= 0.99, f"{kind}/{lang}: {accuracy:.1%}; misses: {misses}"


@pytest.mark.parametrize("kind", KINDS)
def test_an_unreadable_reply_is_never_turned_into_a_value(kind):
    invented = [(r["reply"], read(kind, r["reply"])) for r in load(kind)
                if unreadable(kind, r["expected"]) and got_a_value(kind, read(kind, r["reply"]))]
    assert invented == []


# -- the held-out corpora: each was measured unseen, then used to fix the readers, so each is a floor now rather
# than the built-on corpus's 99% (bench/replies.py and the README keep the unseen figures) --------------------------
HELDOUTS = [HELDOUT, HELDOUT2, HELDOUT3, HELDOUT4]


@pytest.mark.parametrize("corpus", HELDOUTS, ids=lambda p: p.name)
@pytest.mark.parametrize("lang", ["en", "ko"])
@pytest.mark.parametrize("kind", KINDS)
def test_heldout_accuracy_per_kind_and_language(kind, lang, corpus):
    rows = [r for r in load(kind, corpus) if r["lang"] == lang]
    assert rows, (kind, lang)
    misses = [(r["reply"], r["expected"], got) for r in rows if (got := read(kind, r["reply"])) != r["expected"]]
    accuracy = 1 - len(misses) / len(rows)
    assert accuracy >= 0.90, f"{kind}/{lang}: {accuracy:.1%}; misses: {misses}"


@pytest.mark.parametrize("corpus", HELDOUTS, ids=lambda p: p.name)
@pytest.mark.parametrize("kind", KINDS)
def test_heldout_unreadable_reply_is_never_turned_into_a_value(kind, corpus):
    invented = [(r["reply"], read(kind, r["reply"])) for r in load(kind, corpus)
                if unreadable(kind, r["expected"]) and got_a_value(kind, read(kind, r["reply"]))]
    assert invented == []


@pytest.mark.parametrize("lang", ["en", "ko"])
def test_heldout5_evolver_accuracy_and_nothing_invented(lang):
    rows = [r for r in load("evolver", HELDOUT5) if r["lang"] == lang]
    assert rows
    misses = [(r["reply"], r["expected"], got) for r in rows if (got := read("evolver", r["reply"])) != r["expected"]]
    assert 1 - len(misses) / len(rows) >= 0.90, misses
    assert not [m for m in misses if not m[1]["instruction"] and m[2]["instruction"]]


# -- issue 23: a header name inside a sentence is no header; issue 28: a quoted rewrite unwrapped by structure ------
def test_the_issue_23_reply_is_unreadable_not_a_slice():
    reply = ('그렇다.\nThe given prompt is a classic example of a "Created Prompt#" in the context of the '
             '"Given Prompt#" category. It asks for a compound sum.')
    assert read_evolved(reply) == ("", None)


@pytest.mark.parametrize("reply, expected", [
    ('Below, the Created Prompt# keeps the domain.\n\n#Created Prompt#:\nDescribe catastrophe bonds.',
     "Describe catastrophe bonds."),
    ("Sure! #Rewritten Prompt#: Explain dollar-cost averaging.", "Explain dollar-cost averaging."),
    ("#Rewritten Prompt# Explain dollar-cost averaging.", "Explain dollar-cost averaging."),
    ("Here it is — #Rewritten Prompt# Explain dollar-cost averaging.", "Explain dollar-cost averaging."),
    ('The "#Rewritten Prompt#" section should hold a harder version of the given prompt.', ""),
    ("This is a Rewritten Prompt# that adds depth to the original question.", ""),
])
def test_a_header_opens_its_line_or_ends_in_a_colon(reply, expected):
    assert read_evolved(reply)[0] == expected


@pytest.mark.parametrize("reply, expected", [
    ('#Rewritten Prompt#:\n"[s09] Format the dict {"rate": 0.05, "term": 12} as a table."',
     '[s09] Format the dict {"rate": 0.05, "term": 12} as a table.'),
    ('#Rewritten Prompt#:\n"Explain what "mark-to-market" means."', 'Explain what "mark-to-market" means.'),
    ('#Rewritten Prompt#:\n"Bid" versus "ask": explain the spread', '"Bid" versus "ask": explain the spread'),
    ('#Rewritten Prompt#:\n"Bid" versus "ask"', '"Bid" versus "ask"'),
    ("#Rewritten Prompt#:\n'Describe a company's free cash flow.'", "Describe a company's free cash flow."),
    ('#Rewritten Prompt#:\n"Compute the payment on a $300,000 loan.', "Compute the payment on a $300,000 loan."),
    ('#Rewritten Prompt#:\n"Summarize the "Risk Factors" section."\n\nThis adds a format constraint.',
     'Summarize the "Risk Factors" section.'),
    # outside the quotes, a paragraph that asks something is part of the task: nothing is unwrapped
    ('#Rewritten Prompt#:\n"Buy low, sell high."\n\nExplain when this rule fails.',
     '"Buy low, sell high."\n\nExplain when this rule fails.'),
    ('#Rewritten Prompt#:\n"다음 딕셔너리 {"금리": 0.035}를 표로 정리하세요."', '다음 딕셔너리 {"금리": 0.035}를 표로 정리하세요.'),
    ('#Rewritten Prompt#:\n"PER"과 "PBR"을 비교하세요', '"PER"과 "PBR"을 비교하세요'),
])
def test_a_quoted_rewrite_is_unwrapped_by_its_structure(reply, expected):
    assert read_evolved(reply)[0] == expected


def test_a_quoted_rewrite_keeps_its_json_input():
    reply = '#Rewritten Prompt#:\n"Convert the record below to CSV."\n#Input#:\n{"name": "Lee, J.", "n": 1}'
    assert read_evolved(reply) == ("Convert the record below to CSV.", '{"name": "Lee, J.", "n": 1}')


KO_TASK = "고정금리와 변동금리 대출을 비교하고, 근거를 들어 어느 쪽이 유리한지 설명하세요."


# -- the rules added for the fourth held-out corpus, each on replies of its own -------------------------------------
@pytest.mark.parametrize("reply, low, high, expected", [
    ("2 (basic definition question)", 1, 10, 2), ("4 (minor rounding issue)", 0, 5, 4),
    ("7 (or 8)", 1, 10, None),  # a number in the remark may be another value
    ("Hmm, a one-step lookup. I'd say 3.", 1, 10, 3), ("I would say it's a 6 overall.", 1, 10, 6),
    ("I'd say 3 or 4.", 1, 10, None),
])
def test_score_rules_from_the_fourth_heldout_corpus(reply, low, high, expected):
    assert read_score(reply, low, high) == expected


@pytest.mark.parametrize("reply, expected", [
    ("6 / 8", (6, 8)), ("7/10 / 5/10", (7, 5)),
    ("6/10", None), ("9 / 10", None),  # a slash before 10 is the scale: one score, no pair
])
def test_pair_rules_from_the_fourth_heldout_corpus(reply, expected):
    assert read_pair_scores(reply) == expected


EN_TASK = "Explain NPV with a worked example."


@pytest.mark.parametrize("raw, expected", [
    # the model's remarks after the rewrite - about the prompt or its rewriting, asking nothing - go ...
    (f"#Rewritten Prompt#:\n{KO_TASK}\n\n이렇게 하면 비교 조건이 구체화되어 난이도가 높아집니다.", KO_TASK),
    (f"#Rewritten Prompt#:\n{KO_TASK}\n\n(참고: 근거 조건을 추가했습니다.)", KO_TASK),
    (f"#Rewritten Prompt#:\n{KO_TASK}\n\n위와 같이 다시 작성하였습니다.", KO_TASK),
    (f"#Rewritten Prompt#:\n{KO_TASK}\n근거 조건을 추가했어요. 더 수정이 필요하시면 말씀해 주세요.", KO_TASK),
    (f"#Rewritten Prompt#:\n{EN_TASK}\n\nThis version asks for a worked example. Let me know if you'd like any "
     "further changes!", EN_TASK),
    (f"#Rewritten Prompt#:\n{EN_TASK}\n\nI added a worked example to deepen it.", EN_TASK),
    # ... but a paragraph that is part of the task stays: it asks something, or states facts with their own subject
    (f"#Rewritten Prompt#:\n{KO_TASK}\n\n이렇게 구한 결과를 표로 정리하세요.",
     f"{KO_TASK}\n\n이렇게 구한 결과를 표로 정리하세요."),
    (f"#Rewritten Prompt#:\n{KO_TASK}\n\n차주는 작년에 대출 한도를 추가했습니다. 현재 금리는 연 4.5%입니다.",
     f"{KO_TASK}\n\n차주는 작년에 대출 한도를 추가했습니다. 현재 금리는 연 4.5%입니다."),
    (f"#Rewritten Prompt#:\n{EN_TASK}\n\nThe project costs $1,000 and returns $400 a year for three years.",
     f"{EN_TASK}\n\nThe project costs $1,000 and returns $400 a year for three years."),
    (f"#Rewritten Prompt#:\n{EN_TASK}\n\nI have $10,000 to invest and I made $2,000 last year.",
     f"{EN_TASK}\n\nI have $10,000 to invest and I made $2,000 last year."),
    (f"#Rewritten Prompt#:\n{EN_TASK}\n\nIf you use Python, include type hints.",
     f"{EN_TASK}\n\nIf you use Python, include type hints."),
    # a header with nothing after it: the text before it is a preamble, so there is no instruction
    ("Here is my attempt.\n\n#Rewritten Prompt#:\n", ""), ("주어진 프롬프트를 바꿔 보겠습니다.\n#재작성된 프롬프트#:", ""),
    # an English answer instead of a rewrite: statements opening with their subject, asking nothing
    ("The rate is fixed for the whole term. It does not follow the market.", ""),
    # ... but a scenario that goes on to ask, or sets a task, is an instruction
    ("A company has revenue of $1M. Calculate its margin.", "A company has revenue of $1M. Calculate its margin."),
    ("The table below lists cash flows. The NPV must be computed at 8%.",
     "The table below lists cash flows. The NPV must be computed at 8%."),
])
def test_evolver_rules_from_the_fourth_heldout_corpus(raw, expected):
    assert read_evolved(raw) == (expected, None)


def _seeds() -> list[tuple[str, str | None]]:
    found = []
    for path in sorted(SEEDS.glob("*.jsonl")):
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        found += [(r["instruction"], (r.get("input") or "").strip() or None) for r in rows]
    return found


def _instructions() -> list[tuple[str, str | None]]:
    """Every instruction a reader must keep whole: the corpora's expected rewrites and the seed tasks."""
    found = []
    for corpus in (CORPUS, HELDOUT, HELDOUT2, HELDOUT3, HELDOUT4, HELDOUT5):
        found += [(r["expected"]["instruction"], r["expected"]["input"]) for r in load("evolver", corpus)
                  if r["expected"]["instruction"]]
    return found + _seeds()


def test_the_remark_rule_never_cuts_a_real_instruction():
    # A second paragraph that is part of the task must stay: each instruction of the corpora and the seeds, with
    # its input as a second paragraph of the instruction, and every pair of seed tasks of one language as two
    # paragraphs of one instruction, is read back whole.
    # A seed's input under "#Input#:" comes back as the input, whatever it says (data is never cut).
    cut = []
    for instruction, input_text in _instructions():
        for text in [instruction] + ([f"{instruction}\n\n{input_text}"] if input_text else []):
            if read_evolved(f"#Rewritten Prompt#:\n{text}")[0] != text.strip():
                cut.append(text[:120])
        if input_text and read_evolved(f"#Rewritten Prompt#:\n{instruction}\n#Input#:\n{input_text}") != (
                instruction, input_text):
            cut.append(f"input of: {instruction[:100]}")
    seeds = [i for i, _ in _seeds()]
    for a in seeds:
        for b in seeds:
            if a != b and bool(re.search(r"[가-힣]", a)) == bool(re.search(r"[가-힣]", b)):
                if read_evolved(f"#Rewritten Prompt#:\n{a}\n\n{b}")[0] != f"{a}\n\n{b}":
                    cut.append(f"{a[:50]} / {b[:50]}")
    assert cut == []


# -- the rules added for the third held-out corpus, each on replies of its own --------------------------------------
@pytest.mark.parametrize("reply, expected", [
    # "it depends" makes the verdict conditional: both are on the table, unless a labelled answer settles it
    ("That depends on whether the table counts as a constraint; if not, they are the same.", None),
    ("관점에 따라 달라집니다. 형식을 조건으로 보면 다르고, 아니면 같습니다.", None),
    ("It depends on how you read 'briefly'.\n\nFinal answer: Not Equal", False),
    ("Equal. The answer to both depends on the discount rate.", True),  # "depends" inside the content
    # a first impression overturned by a turn gives its verdict after the turn
    ("언뜻 다른 질문처럼 보이지만 실제로는 같은 질문입니다.", True),
    ("At first glance both ask about bonds, but the second adds convexity, so they are not equal.", False),
    ("처음에는 동일해 보이지만, 두 번째 지시문이 표 형식을 요구하므로 다릅니다.", False),
])
def test_equality_rules_from_the_third_heldout_corpus(reply, expected):
    assert read_equal(reply) is expected


@pytest.mark.parametrize("reply, low, high, expected", [
    # a number word alone on the line (with at most a label) is that number ...
    ("Seven.", 1, 10, 7), ("Score: three", 0, 5, 3), ("다섯", 1, 10, 5), ("Thinking.\n\nRating: eight!", 1, 10, 8),
    ("Ten.", 0, 5, None),  # out of range stays unreadable
    # ... but a number word in running text is not read
    ("The second one is harder.", 1, 10, None), ("It needs two steps.", 1, 10, None),
    # "Complexity" / "복잡도" label the difficulty
    ("Complexity: 6 (two concepts combined).", 1, 10, 6), ("복잡도는 4입니다.", 1, 10, 4),
])
def test_score_rules_from_the_third_heldout_corpus(reply, low, high, expected):
    assert read_score(reply, low, high) == expected


@pytest.mark.parametrize("raw, expected", [
    # another "#Section#:" after the rewrite is not the prompt, whatever it is called ...
    ("#Rewritten Prompt#:\nExplain NPV with an example.\n\n#Reasoning#:\nI added an example.",
     ("Explain NPV with an example.", None)),
    (f"#재작성된 프롬프트#:\n{KO_TASK}\n\n#변경 이유#:\n근거 조건을 더했습니다.", (KO_TASK, None)),
    # ... except #Input#, which belongs to the rewrite (and a section after the input goes too)
    ("#Rewritten Prompt#:\nCompute the payment.\n#Input#:\nPrincipal: $1,000\n\n#Explanation#:\nAdded input.",
     ("Compute the payment.", "Principal: $1,000")),
])
def test_evolver_rules_from_the_third_heldout_corpus(raw, expected):
    assert read_evolved(raw) == expected


# -- the rules added for the second held-out corpus, each on replies of its own ------------------------------------
@pytest.mark.parametrize("reply, low, high, expected", [
    # the score alone on a line after the reasoning is the score ...
    ("Could be a 6 or 7. The second part pushes it up, so 7.\n\n7", 1, 10, 7),
    ("6점과 7점 사이에서 고민했지만 조건이 많아 7점이 맞겠습니다.\n\n**7**", 1, 10, 7),
    ("The payment is 1000 * 0.05 / (1 - 1.05^-10) = 129.50, as the response says.\n\nScore: 5\nAccurate.", 0, 5, 5),
    ("PV = 400/1.08 + 400/1.08² = 370.37 + 342.94\n\n4\n계산이 맞습니다.", 0, 5, 4),
    ("It is hard. A 9 would need a proof.\n\n7", 1, 10, 7),  # a hypothetical after it is not another value
    # ... unless something after it names another value or hesitates
    ("Thinking.\n\n8\n\nActually 7 or 8.", 1, 10, None),
    ("Thinking.\n\n8\n\nScore: 6", 1, 10, None),  # two score lines that disagree ...
    ("Thinking.\nInitial score: 3\nMore thinking.\nFinal score: 4", 0, 5, 4),  # ... unless one concludes
    ("Thinking.\n\nScore: 4/10", 0, 5, None),  # a value on another scale stays unconvertible
    # "or" between two scores is a hedge, as a range is; a count is not
    ("Score: 7 or 8", 1, 10, None), ("I would give it a 7 or 8.", 1, 10, None),
    ("It lists 2 or 3 examples. Score: 6", 1, 10, 6),
    # a range end in arithmetic, or with two decimals, is working
    ("Rate check: (1 - 1.004167) is tiny.\nScore: 4 overall, then.", 0, 5, 4),
])
def test_score_rules_from_the_second_heldout_corpus(reply, low, high, expected):
    assert read_score(reply, low, high) == expected


@pytest.mark.parametrize("reply, expected", [
    ("두 답변 모두 비슷합니다. 둘 다 7점에서 8점 정도로 보입니다.", None),  # a Korean range is a hedge
    ("어시스턴트 1은 10점 만점에서 8점, 어시스턴트 2는 6점입니다.", (8, 6)),  # the scale is not a range
    ("둘 다 8점입니다.", (8, 8)),
])
def test_pair_rules_from_the_second_heldout_corpus(reply, expected):
    assert read_pair_scores(reply) == expected


@pytest.mark.parametrize("raw, expected", [
    (f"#Rewritten Prompt#:\n{KO_TASK}\n\n※ 참고: 근거 조건을 더했습니다.", (KO_TASK, None)),
    (f"#Rewritten Prompt#:\n{KO_TASK}\n\n이렇게 바꾸면 답하기가 더 어려워집니다. 도움이 되셨길 바랍니다!", (KO_TASK, None)),
    ("#Rewritten Prompt#:\nExplain NPV with an example.\n\nHope this helps!", ("Explain NPV with an example.", None)),
    ("#Rewritten Prompt#:\n\n(No rewrite needed - this prompt is already complex enough.)", ("", None)),
    ("#Rewritten Prompt#:\n(재작성 불필요: 이 프롬프트는 이미 충분히 구체적입니다.)", ("", None)),
    # the prompt answered, not rewritten: Korean declarative prose with no request in it
    ("고정금리는 대출 기간 내내 금리가 같습니다. 변동금리는 시장금리에 따라 바뀝니다.", ("", None)),
    # ... but a request, a question, an imperative or a single task statement is an instruction
    ("저는 30대 직장인입니다. 연금저축과 IRP 중 무엇이 유리한지 알고 싶습니다.",
     ("저는 30대 직장인입니다. 연금저축과 IRP 중 무엇이 유리한지 알고 싶습니다.", None)),
    ("고객은 30대입니다. 고정금리와 변동금리 중 무엇이 유리한가요?",
     ("고객은 30대입니다. 고정금리와 변동금리 중 무엇이 유리한가요?", None)),
    ("다음 문장을 영어로 번역합니다.", ("다음 문장을 영어로 번역합니다.", None)),
    (KO_TASK, (KO_TASK, None)),
])
def test_evolver_rules_from_the_second_heldout_corpus(raw, expected):
    assert read_evolved(raw) == expected


# -- the rules added for the held-out corpus, each on replies of its own -----------------------------------------
@pytest.mark.parametrize("reply, expected", [
    # a verdict under a conclusion heading, or after "my answer is", wins over analysis lines
    ("Topic: identical\nDepth: different\n\nVerdict:\nNot Equal", False),
    ("### 분석\n- 주제: 동일\n- 조건: 다름\n### 판단\nEqual", True),
    ("The wording is not the same, but the task is, so my answer is Equal.", True),
    # a denied verdict is the other one
    ("Equal이라고 하기는 어렵습니다.", False), ("다르다고 보기는 어렵습니다.", True),
    # an open question or a qualified sameness is no verdict; a conclusion can still settle it
    ("It is debatable whether the added example matters.", None), ("They are almost identical.", None),
    ("It is debatable. Ultimately, they are different.", False),
])
def test_equality_rules_from_the_heldout_corpus(reply, expected):
    assert read_equal(reply) is expected


@pytest.mark.parametrize("reply, low, high, expected", [
    ("Moderate: 5", 1, 10, 5), ("Hard! 8", 1, 10, 8), ("Step 2: 3", 1, 10, None),   # a verbal grade, then the value
    ("난이도를 1~10으로 보면 4입니다.", 1, 10, 4), ("0~5 척도로는 3에 해당합니다.", 0, 5, 3),  # a Korean predicate
    ("3점입니다. 5점짜리 답이 되려면 예시가 필요합니다.", 0, 5, 3),  # a hypothetical on a noun after the value
])
def test_score_rules_from_the_heldout_corpus(reply, low, high, expected):
    assert read_score(reply, low, high) == expected


@pytest.mark.parametrize("reply, expected", [
    ("| | Assistant 1 | Assistant 2 |\n|---|---|---|\n| Score | 8 | 6 |", (8, 6)),
    ("| Assistant | Accuracy | Overall |\n|---|---|---|\n| Assistant 1 | 9 | 8 |\n| Assistant 2 | 5 | 6 |", (8, 6)),
    ("| Assistant | Accuracy | Clarity |\n|---|---|---|\n| 1 | 9 | 8 |\n| 2 | 5 | 6 |", None),  # which column?
    ("**Assistant 1**\nAccuracy: good\nScore: 8/10\n\n**Assistant 2**\nScore: 6/10", (8, 6)),
    ("어시스턴트 1은 10점 만점 중 9점, 어시스턴트 2는 10점 만점 중 4점", (9, 4)),
    ("Assistant 1 => 5, Assistant 2 => 9", (5, 9)),
    ("Assistant 1 is thorough; I give it a 9. Assistant 2 is vague, so I give it a 5.", (9, 5)),
    ("The first assistant gets 8, the second assistant gets 6.", (8, 6)),
    ("Overall scores: 7 4", (7, 4)),
    ("Assistant 1: 7 or 8\nAssistant 2: 5", None), ("Both deserve between 6 and 7.", None),
    ("Assistant 1 lists 3 to 5 examples.\nScores: 8 6", (8, 6)),
])
def test_pair_rules_from_the_heldout_corpus(reply, expected):
    assert read_pair_scores(reply) == expected


@pytest.mark.parametrize("raw, expected", [
    ("#Rewritten Prompt#:\n```\nSummarise the review.\n```\n#Input#:\n```\nGreat app.\n```",
     ("Summarise the review.", "Great app.")),
    ("#Rewritten Prompt#:\nSummarise the review.\n#Input#:\n'Great app.'", ("Summarise the review.", "Great app.")),
    (f"아래는 더 어렵게 고친 지시문입니다.\n\n{KO_TASK}", (KO_TASK, None)),
    (f"#Rewritten Prompt#:\n{KO_TASK}\n\n이 버전에서는 근거 조건을 더했습니다.", (KO_TASK, None)),
    ("This prompt is already specific enough; there is no need to make it more complicated.", ("", None)),
    ("주어진 지시문은 이미 충분히 어려워서 수정할 필요가 없습니다.", ("", None)),
])
def test_evolver_rules_from_the_heldout_corpus(raw, expected):
    assert read_evolved(raw) == expected


# -- the named failures of the older parsers -----------------------------------------------------------------
def test_a_later_sentence_naming_another_score_is_not_the_score():
    assert read_score("3\nThe answer explains the concept but never computes anything; a score of 5 would need "
                      "a worked example.", 0, 5) == 3


def test_the_scale_in_parentheses_after_the_label_is_not_the_score():
    assert read_score("Accuracy (0-5): 4", 0, 5) == 4


def test_the_scale_before_the_value_is_not_the_score():
    assert read_score("On a scale of 1 to 10, I would rate this a 7", 1, 10) == 7


def test_a_korean_negation_holding_dongil_is_not_equal():
    assert read_equal("동일하지 않습니다") is False
    assert read_equal("두 지시문은 동일하지 않습니다.") is False
    assert read_equal("동일한 지시문이 아닙니다.") is False
    assert read_equal("동일합니다.") is True


@pytest.mark.parametrize("reply, low, high, expected", [
    ("Score: **7**", 1, 10, 7), ("난이도: 7점", 1, 10, 7), ("평가: 4점 (5점 만점)", 0, 5, 4),
    ("Rating: [[7]]", 1, 10, 7), ("7/10", 1, 10, 7), ("**8**", 1, 10, 8), ("4.5", 0, 5, 4.5),
    ("10점 만점에 6점", 1, 10, 6), ("I'd give it 4 out of 5.", 0, 5, 4),
    ("...so the explanation is thorough. Therefore, I rate it 6.", 1, 10, 6),
    ("11", 1, 10, None), ("6\nExcellent.", 0, 5, None), ("Score: 8/10", 0, 5, None), ("7-8", 1, 10, None),
    ("It's between 6 and 7.", 1, 10, None), ("out of 10", 1, 10, None), ("5점 만점", 0, 5, None),
])
def test_score_rules(reply, low, high, expected):
    assert read_score(reply, low, high) == expected


@pytest.mark.parametrize("reply, expected", [
    ("Not Equal", False), ("not equal", False), ("Unequal", False), ("They are not the same.", False),
    ("They are different.", False), ("**Not Equal**", False), ("같지 않습니다.", False), ("다릅니다.", False),
    ("다른 지시문입니다.", False), ("같지 않다.", False), ("Equal", True), ("They are equal.", True),
    ("동일합니다.", True), ("같습니다.", True), ("It is hard to say.", None), ("Equal or Not Equal?", None),
    ('{"equal": true}', True), ('```json\n{"verdict": "Not Equal"}\n```', False),
])
def test_equality_rules(reply, expected):
    assert read_equal(reply) is expected


@pytest.mark.parametrize("reply, expected", [
    ("8 6", (8, 6)), ("Assistant 1: 8/10\nAssistant 2: 6/10", (8, 6)), ("[[8]] [[6]]", (8, 6)),
    ("Assistant 1 receives 8, Assistant 2 receives 6", (8, 6)), ("어시스턴트 1: 8점, 어시스턴트 2: 6점", (8, 6)),
    ('{"assistant_1": 8, "assistant_2": 6}', (8, 6)), ("8", None), ("11 6", None), ("Assistant 1 is better.", None),
])
def test_pair_rules(reply, expected):
    assert read_pair_scores(reply) == expected


@pytest.mark.parametrize("reply, expected", [
    ('{"score": 5}', 5), ('{"score": 7}', None), ('{"reason": "The NPV is right.", "score": 4}', 4), ('```json\n{"score": 3}\n```', 3),
    ('{"score": "9"}', None), ('{"reason": "no score"}', None),
])
def test_score_from_json(reply, expected):
    assert read_score(reply, 0, 5) == expected


# -- the evolver: the old parser's expectations hold --------------------------------------------------------
GOAL = "Write a haiku about autumn leaves that mentions a colour."
KO = "가을 낙엽에 대한 하이쿠를 쓰되, 색깔 하나를 꼭 언급하세요."


@pytest.mark.parametrize("raw, expected", [
    (f"#Rewritten Prompt#:\n{GOAL}", GOAL), (f"**Rewritten Prompt:**\n{GOAL}", GOAL),
    (f"Rewritten Prompt: \"{GOAL}\"", GOAL), (f"#Created Prompt#:\n{GOAL}", GOAL), (f"“{GOAL}”", GOAL),
    (f"Sure! Here's a more challenging version:\n\"{GOAL}\"", GOAL),
    (f"Of course! Below is the rewritten prompt:\n#Rewritten Prompt#:\n{GOAL}", GOAL),
    (f"{GOAL}\n\n**Explanation:** The rewrite adds a constraint.", GOAL),
    (f"#Rewritten Prompt#:\n{GOAL}\n\nIn this rewritten version, I asked for a colour.", GOAL),
    (f"#Given Prompt#:\nWrite a haiku.\n#Rewritten Prompt#:\n{GOAL}", GOAL),
    (f"  \r\n#Rewritten Prompt#:\r\n{GOAL}\r\n  ", GOAL),
    (f"물론입니다! 다음은 다시 쓴 프롬프트입니다:\n{KO}", KO), (f"#재작성된 프롬프트#:\n{KO}", KO),
    (f"#새로 만든 프롬프트#:\n{KO}", KO), (f"다시 쓴 프롬프트: {KO}", KO), (f"새 지시문:\n「{KO}」", KO),
    (f"#Rewritten Prompt#:\n{KO}\n\n이 지시문은 제약을 하나 더 추가했습니다.", KO),
    # Text that merely looks like a marker stays.
    ("#Rewritten Prompt#:\nDesign a new instruction set for a toy CPU with 8 registers.",
     "Design a new instruction set for a toy CPU with 8 registers."),
    ("#Rewritten Prompt#:\nWrite a poem about autumn.\nNote that each line must mention a colour.",
     "Write a poem about autumn.\nNote that each line must mention a colour."),
    ("#Rewritten Prompt#:\n네트워크 보안의 기본 원칙을 설명하세요.\n예시를 두 개 드세요.",
     "네트워크 보안의 기본 원칙을 설명하세요.\n예시를 두 개 드세요."),
    ("#Rewritten Prompt#:\nFix the bug:\n```python\nprint(1\n```", "Fix the bug:\n```python\nprint(1\n```"),
])
def test_evolved_instruction_is_extracted(raw, expected):
    assert read_evolved(raw) == (expected, None)


def test_evolved_input_sections_and_empty_replies():
    raw = "#Rewritten Prompt#:\nSummarise the table.\n#Input#:\n| a | b |\n|---|---|\n| 1 | 2 |"
    assert read_evolved(raw) == ("Summarise the table.", "| a | b |\n|---|---|\n| 1 | 2 |")
    assert read_evolved("요약하세요.\n#입력#:\n원/달러 환율 1,350원")[1] == "원/달러 환율 1,350원"
    for raw in ["", "   ", "#Rewritten Prompt#:", "**Rewritten Prompt:**  \n", "#재작성된 프롬프트#:", None]:
        assert read_evolved(raw)[0] == ""
    assert read_evolved("#Rewritten Prompt#: first #Rewritten Prompt#: second")[0] == "second"
    assert read_evolved("#Rewritten Prompt#: first #Rewritten Prompt#:")[0] == "first"


# -- nasty inputs never make a reader raise ------------------------------------------------------------------
NASTY = [
    None, "", " ", "\n\n\t", "???", "...!!!", "###", "**", "```", "```json\n{", "{", "}", "{}", "[]", "[[", "]]",
    '{"score": null}', '{"score": [1, 2]}', '{"equal": "maybe"}', '{"scores": [1]}', '{"assistant_1": {}}',
    "null", "0", "-3", "1e9", "NaN", "∞", "٣", "７", "7" * 5000, "Score: " + "9" * 400,
    "Equal " * 20000, "Not Equal\n" * 5000, "a" * 200_000, "점수: 7점 " * 3000, "🙂🙃" * 100,
    "Score: 7 点数 : 8 점수 7 درجة ٧", "Assistant 1: 8 ассистент 2: 6 어시스턴트 2: 6점", "\x00\x01\x02",
    "#Rewritten Prompt#:" * 1000, "#Input#:" * 100, "> " * 1000, "[[" * 1000 + "7" + "]]" * 1000,
    "1-" * 5000, "(" * 5000, "동일" * 5000 + "하지 않" * 100, "\ud800".encode("utf-8", "surrogatepass").decode(
        "utf-8", "replace"),
]


@pytest.mark.parametrize("text", NASTY, ids=lambda t: repr(t)[:30])
def test_readers_never_raise(text):
    assert read_equal(text) in (True, False, None)
    for low, high in ((1, 10), (0, 5)):
        value = read_score(text, low, high)
        assert value is None or low <= value <= high
    pair = read_pair_scores(text)
    assert pair is None or (len(pair) == 2 and all(1 <= v <= 10 for v in pair))
    instruction, input_text = read_evolved(text)
    assert isinstance(instruction, str) and (input_text is None or isinstance(input_text, str))


@pytest.mark.parametrize("text", NASTY[:12], ids=lambda t: repr(t)[:30])
def test_nothing_readable_gives_nothing(text):
    assert read_equal(text) is None
    assert read_score(text, 1, 10) is None
    assert read_pair_scores(text) is None
