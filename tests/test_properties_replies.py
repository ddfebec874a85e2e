"""Property-based tests (issue 22): the reply readers (evolab/text/replies.py, evolab/text/reading.py) over any
text return a value or None (an empty list for the list readers), never raise."""
from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from evolab.text import reading, replies

EXAMPLES = 200

# Pieces of what models write back: verdicts, scores, JSON, Markdown, headers, Korean, numbers of every shape.
FRAGMENTS = [
    "Equal", "Not Equal", "not equal", "Score:", "Difficulty:", "Rating: ", "/10", "out of 10", "7", "7.5", "-3",
    "1e309", "10**400", "NaN", "Infinity", "½", "٣", "①", "Assistant 1:", "Assistant 2:", "| Assistant | Score |",
    "|---|---|", "**", "#", "##", "#Rewritten Prompt#:", "#Created Prompt#", "#Given Prompt#", "Instruction:",
    "1.", "2)", "- ", "```json", "```", "{", "}", "[", "]", '"score":', '"verdict":', '"candidates":', '"template":',
    '"rationale":', '"assistant_1":', '"skill":', '"difficulty":', "null", "true", ":", ",", "\n", "\n\n", " ",
    "\t", "\u2028", "점수:", "난이도:", "스킬:", "같음", "다름", "I'm sorry", "However,", "Skill: math", "0", "10",
    "{{instruction}}", "\x00", "\ufeff",
]
reply_like = st.lists(st.sampled_from(FRAGMENTS) | st.text(max_size=6), max_size=30).map("".join)
any_text = st.text(max_size=300) | reply_like
json_like = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
                         lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
                             st.sampled_from(["score", "verdict", "reason", "assistant_1", "assistant_2", "candidates",
                                              "template", "rationale", "skill", "new_skill", "difficulty",
                                              "instruction", "instructions", "input"]) | st.text(max_size=5),
                             inner, max_size=4), max_leaves=10)
texts = any_text | json_like.map(lambda v: json.dumps(v, ensure_ascii=False))


@settings(max_examples=EXAMPLES, deadline=None)
@given(texts | st.none(), st.sampled_from([(1, 10), (0, 5), (0, 100), (1, 1)]))
def test_score_and_verdict_readers_never_raise(text, scale):
    assert replies.read_equal(text) in (True, False, None)
    value = replies.read_score(text, *scale)
    assert value is None or scale[0] <= value <= scale[1]
    pair = replies.read_pair_scores(text)
    assert pair is None or (isinstance(pair, tuple) and len(pair) == 2)
    if text is not None:
        obj = replies.json_object(text)
        assert obj is None or isinstance(obj, dict)


@settings(max_examples=EXAMPLES, deadline=None)
@given(texts | st.none(), st.lists(st.text(max_size=8), max_size=3))
def test_text_readers_never_raise(text, skills):
    instruction, extra = replies.read_evolved(text)
    assert isinstance(instruction, str) and (extra is None or isinstance(extra, str))
    items = replies.read_instruction_list(text)
    assert isinstance(items, list) and all(isinstance(a, str) and isinstance(b, str) for a, b in items)
    tag = replies.read_tag(text, skills)
    assert tag is None or isinstance(tag, dict)
    candidates = replies.read_template_candidates(text)
    assert candidates is None or isinstance(candidates, list)


@settings(max_examples=EXAMPLES, deadline=None)
@given(texts, st.booleans(), st.lists(st.text(max_size=8), max_size=3))
def test_reading_every_kind_never_raises(text, structured, skills):
    for kind in [*reading.KINDS.values(), reading.tag_kind(skills)]:
        value, how, reason = reading.read(kind, text, structured)
        assert how in (reading.JSON, reading.TEXT)
        assert reason is None or isinstance(reason, str)
        shown = reading.Reading(value, how, text, reason).describe()
        assert isinstance(shown, str)
