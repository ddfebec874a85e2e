import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evolab.schema import Node
from evolab.text.complexity import METRICS, complexity_index, complexity_scores, detect_language, measure


def test_plain_instruction_has_no_cues():
    m = measure("Write a poem about cats.")
    assert m["constraints"] == 0 and m["questions"] == 0 and m["reasoning_cues"] == 0
    assert m["words"] == 5 and m["tokens"] >= 5 and m["input_chars"] == 0


def test_english_cues_are_counted():
    text = ("Write a poem about cats. You must use at least three stanzas and no more than 100 words, "
            "without rhyme. Explain why you chose the form step by step. First outline it, then write it. "
            "Why cats? Is it funny?")
    m = measure(text, "some input", "en")
    # must, at least, "no more than 100 words" (one constraint), without
    assert m["constraints"] == 4
    # explain why, step by step, why, first ... then
    assert m["reasoning_cues"] == 4
    assert m["questions"] == 2
    assert m["input_chars"] == len("some input")


def test_korean_cues_are_counted():
    text = ("고양이에 대한 시를 반드시 3개 이상의 연으로, 100단어 이하로 쓰세요. 운율 없이 작성해야 합니다. "
            "세 문장만 사용하세요. 먼저 개요를 쓰고 그 다음 시를 쓰세요. 이 형식을 선택한 이유를 단계별로 "
            "설명하세요. 왜 고양이인가요? 어떤 것이 좋을까요")
    m = measure(text, language="ko")
    # 반드시, "3개 이상", "100단어 이하", 없이, 해야, 문장만
    assert m["constraints"] == 6
    # 먼저...그 다음, 이유, 단계별, 설명, 왜
    assert m["reasoning_cues"] == 5
    # "?" and the question ending 까요 without a mark
    assert m["questions"] == 2
    assert m["words"] == len(text.split())


def test_korean_words_that_only_look_like_cues_do_not_count():
    m = measure("이상한 꿈을 만들어 보세요.", language="ko")  # 이상한 = strange, 만들어 = make
    assert m["constraints"] == 0


def test_language_auto_detects_korean():
    assert detect_language("서울의 날씨를 설명하세요") == "ko"
    assert detect_language("Describe the weather in Seoul") == "en"
    assert measure("반드시 포함하세요", language="auto")["constraints"] == 2


def test_constraints_raise_the_index():
    base = measure("Describe the water cycle.")
    harder = measure("Describe the water cycle. You must include at least two diagrams and explain why step by step.")
    assert harder["index"] > base["index"] + 3


@pytest.mark.parametrize("chain", [
    ["Write a poem about cats.",
     "Write a poem about cats that uses at least three stanzas.",
     "Write a poem about cats that uses at least three stanzas and no more than 80 words, without rhyme.",
     "Write a poem about cats that uses at least three stanzas and no more than 80 words, without rhyme. "
     "First outline the stanzas, then explain why each image fits step by step."],
    ["고양이에 대한 시를 쓰세요.",
     "고양이에 대한 시를 3개 이상의 연으로 쓰세요.",
     "고양이에 대한 시를 3개 이상의 연으로, 80단어 이하로, 운율 없이 쓰세요.",
     "고양이에 대한 시를 3개 이상의 연으로, 80단어 이하로, 운율 없이 쓰세요. 먼저 연의 개요를 쓰고, "
     "그 다음 각 이미지가 어울리는 이유를 단계별로 설명하세요."],
], ids=["en", "ko"])
def test_the_index_rises_along_an_evolution_chain(chain):
    """What the Drift page shows: each in-depth step (a constraint, more constraints, reasoning steps)
    makes the instruction score higher, in English and in Korean."""
    indices = [measure(text)["index"] for text in chain]
    assert indices == sorted(indices) and len(set(indices)) == len(indices)


def test_an_input_to_work_on_raises_the_index():
    table = "quarter | revenue\n" + "Q1 | 120\nQ2 | 135\nQ3 | 128\nQ4 | 150\n" * 5
    assert measure("Summarise the table.", table)["index"] > measure("Summarise the table.")["index"]


def test_a_constraint_counts_for_more_than_padding():
    padded = measure("Describe the weather in detail please, covering many aspects of the climate and seasons "
                     "in the region over the year.")
    constrained = measure("Describe the weather. You must use exactly two sentences.")
    assert constrained["index"] > padded["index"]


def test_the_stored_index_is_the_one_measured():
    m = measure("Explain why the sky is blue. Use at least 3 sentences.", "x" * 300)
    assert math.isclose(m["index"], complexity_index(m))


def test_complexity_scores_rows():
    node = Node(id="n1", run_id="r", parent_id=None, root_id="n1", round=0, operation="seed",
                instruction="Explain step by step why ice floats. Use exactly two paragraphs and avoid jargon.", input="",
                language="en")
    scores = complexity_scores(node)
    assert [s.metric for s in scores] == list(METRICS)
    assert all(s.judge == "heuristic" and s.node_id == "n1" for s in scores)
    by = {s.metric: s.value for s in scores}
    # "exactly two paragraphs", avoid / explain, step by step, why
    assert by["cx_constraints"] == 2 and by["cx_reasoning_cues"] == 3 and by["cx_input_chars"] == 0


@settings(max_examples=200, deadline=None)
@given(st.text(), st.text(max_size=50), st.sampled_from(["en", "ko", "auto", "xx"]))
def test_measure_never_crashes(instruction, input_, language):
    m = measure(instruction, input_, language)
    assert set(m) == {"tokens", "words", "constraints", "questions", "reasoning_cues", "input_chars", "index"}
    assert all(math.isfinite(v) and v >= 0 for v in m.values())
