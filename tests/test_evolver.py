"""The evolver: pulling the evolved instruction out of free-form model output, and one evolution step."""
from __future__ import annotations

import asyncio
import random
import re

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from evolab.engine.evolver import evolve, parse_evolved
from evolab.engine.operations import get_operation, load_template
from evolab.llm import FakeBackend, LLMClient

GOAL = "Write a haiku about autumn leaves that mentions a colour."


@pytest.mark.parametrize("raw", [
    f"#Rewritten Prompt#:\n{GOAL}",
    f"#Rewritten Prompt#: {GOAL}",
    f"# Rewritten Prompt #:\n{GOAL}",
    f"### Rewritten Prompt\n{GOAL}",
    f"**Rewritten Prompt:**\n{GOAL}",
    f"**Rewritten Prompt**: {GOAL}",
    f"Rewritten Prompt: \"{GOAL}\"",
    f"Rewritten Prompt\n{GOAL}",
    f"New instruction: {GOAL}",
    f"The evolved instruction is: {GOAL}",
    f"#Created Prompt#:\n{GOAL}",
    f'"{GOAL}"',
    f"“{GOAL}”",
    f"'{GOAL}'",
    f"`{GOAL}`",
    f"Sure, here is the rewritten prompt:\n\n{GOAL}",
    f"Sure! Here's a more challenging version:\n\"{GOAL}\"",
    f"Certainly.\n{GOAL}",
    f"Of course! Below is the rewritten prompt:\n#Rewritten Prompt#:\n{GOAL}",
    f"Okay, here you go:\n{GOAL}",
    f"{GOAL}\n\nExplanation: I added a constraint about colour.",
    f"{GOAL}\n\n**Explanation:** The rewrite adds a constraint.",
    f"#Rewritten Prompt#:\n{GOAL}\n\nThis rewritten prompt adds a constraint about colour.",
    f"#Rewritten Prompt#:\n{GOAL}\n\nIn this rewritten version, I asked for a colour.",
    f"#Rewritten Prompt#:\n{GOAL}\n\nNote: the colour requirement makes it harder.",
    f"#Rewritten Prompt#:\n{GOAL}\nChanges made: added a colour.",
    # The model echoes the given prompt before its rewrite.
    f"#Given Prompt#:\nWrite a haiku.\n#Rewritten Prompt#:\n{GOAL}",
    f"#Given Prompt#: Write a haiku.\n\n**Rewritten Prompt:** {GOAL}",
    f"  \r\n#Rewritten Prompt#:\r\n{GOAL}\r\n  ",
])
def test_wrapped_instruction_is_extracted(raw):
    assert parse_evolved(raw) == (GOAL, None)


KO = "가을 낙엽에 대한 하이쿠를 쓰되, 색깔 하나를 꼭 언급하세요."


@pytest.mark.parametrize("raw", [
    f"물론입니다! 다음은 다시 쓴 프롬프트입니다:\n{KO}",
    f"네, 다시 쓴 지시문은 다음과 같습니다:\n{KO}",
    f"다음은 다시 쓴 지시문입니다:\n\n\"{KO}\"",
    f"좋습니다. 아래와 같이 바꿨습니다.\n{KO}",
    f"#다시 쓴 프롬프트#: {KO}",
    f"재작성된 지시문: {KO}",
    f"새 지시문:\n「{KO}」",
    f"#Rewritten Prompt#:\n{KO}\n\n설명: 색깔에 대한 제약을 추가했습니다.",
    f"#Rewritten Prompt#:\n{KO}\n\n이 지시문은 제약을 하나 더 추가했습니다.",
    f"#Rewritten Prompt#:\n{KO}\n참고: 더 어렵게 만들었습니다.",
])
def test_korean_preambles_headers_and_trailers(raw):
    assert parse_evolved(raw) == (KO, None)


@pytest.mark.parametrize("instruction", [
    # Korean words that begin like a preamble ("네" yes, "물론" of course) but are not one.
    "네트워크 보안의 기본 원칙을 설명하세요.\n예시를 두 개 드세요.",
    "네 가지 예를 들어 설명하세요.\n각 예는 한 문장으로 쓰세요.",
    "설명은 200자 이내로 하세요.\n표를 하나 포함하세요.",
    # Words that look like headers or trailers inside the instruction itself.
    "Design a new instruction set for a toy CPU with 8 registers.",
    "Write a new prompt for an image generator that depicts a storm at sea.",
    "Write a poem about autumn.\nNote that each line must mention a colour.",
    "Explain the bug.\nExplanation of each fix must cite the line number.",
    'Explain what "carpe diem" means and when to use it.',
    "Compute 3 * 4 and explain: why is it 12?",
])
def test_instruction_text_that_merely_looks_like_a_marker_is_kept(instruction):
    assert parse_evolved(f"#Rewritten Prompt#:\n{instruction}") == (instruction, None)


def test_input_section_is_split_off():
    raw = "#Rewritten Prompt#:\nSummarise the table.\n#Input#:\n| a | b |\n|---|---|\n| 1 | 2 |"
    assert parse_evolved(raw) == ("Summarise the table.", "| a | b |\n|---|---|\n| 1 | 2 |")
    assert parse_evolved("Summarise it. #Input#: some text")[1] == "some text"


@pytest.mark.parametrize("raw", ["", "   ", "\n\n", "#Rewritten Prompt#:", "**Rewritten Prompt:**  \n",
                                 "#Rewritten Prompt#:\n#Rewritten Prompt#:", None])
def test_nothing_usable_gives_an_empty_instruction(raw):
    assert parse_evolved(raw)[0] == ""


def test_last_header_wins_and_an_empty_tail_falls_back_to_the_piece_before():
    assert parse_evolved("#Rewritten Prompt#: first #Rewritten Prompt#: second")[0] == "second"
    assert parse_evolved("#Rewritten Prompt#: first #Rewritten Prompt#:")[0] == "first"


# -- property-based ----------------------------------------------------------------------------------------
FRAGMENTS = ["#Rewritten Prompt#:", "**Rewritten Prompt:**", "#Given Prompt#:", "#Input#:", "Sure, here is:",
             "\n", " ", "\"", "'", "“", "”", "Explanation:", "Note:", "rewritten prompt", "새 지시문:",
             "물론입니다!", "네,", "다음은:", "Write a haiku.", "{x}", "%s", "#", "**", "`", ":"]
messy = st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=12)), max_size=14).map("".join)
HEADER_IN_RESULT = re.compile(r"#\s*rewritten\s+prompt\s*#|\*\*\s*rewritten\s+prompt\s*:?\s*\*\*"
                              r"|rewritten\s+prompt\s*[:：]|다시\s*쓴\s*프롬프트\s*#?\s*[:：]|새\s*지시문\s*[:：]", re.I)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=st.one_of(st.text(), messy))
@example(raw="#Rewritten Prompt#: abc #Rewritten Prompt#:")
@example(raw="**Rewritten Prompt:** **Rewritten Prompt:**x")
def test_parser_never_raises_and_never_returns_a_header(raw):
    instruction, input_text = parse_evolved(raw)
    assert isinstance(instruction, str)
    assert input_text is None or isinstance(input_text, str)
    assert not HEADER_IN_RESULT.search(instruction), instruction


# Text with none of the parser's markers: no header words, no preamble or trailer words, no #Input#,
# no leading ** (bold header markup), not wrapped in quotes, no surrounding whitespace.
MARKER_WORDS = re.compile(
    r"prompt|instruction|프롬프트|지시문|input|#|explanation|notes?\b|rationale|changes made|설명|참고"
    r"|^\s*(?:sure|certainly|of course|okay|ok|here|below|absolutely|물론|네|좋습니다|알겠습니다|다음은|여기)"
    r"|\n\s*(?:this|in this|이 )|^\*\*", re.I | re.M)
plain = st.lists(st.one_of(
    st.sampled_from(list("abcdefghijklmnopqrstuvwxyz ABCXYZ0123456789.,;:!?()[]{}%$&*/-+=<>@~|\n\t")
                    + list("가나다라마바사아자차카타파하국어문장쓰세요") + ['"', "'", "“", "”", "`", "\\"]),
    st.sampled_from(["%s", "{0}", "{instruction}", "{format}", " and ", "Sort ", "the list", "\n- "])),
    min_size=1, max_size=60).map("".join).filter(lambda x: not x.lstrip().startswith(">"))  # "> " is a quote mark


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(x=plain)
@example(x="Sort these: {3, 1, 2} using %s formatting.")
@example(x="Line one.\nLine two: with a colon.")
def test_instruction_under_the_header_comes_back_unchanged(x):
    x = x.strip()
    assume(x and not MARKER_WORDS.search(x))
    assume(not any(x.startswith(q) and x.endswith(r) for q, r in [('"', '"'), ("'", "'"), ("“", "”"), ("`", "`")]))
    # an opening double quote never closed, the only one of its kind, is the model's stray wrap (issue 28)
    assume(not any(x.startswith(q) and x.count(q) == 1 and r not in x[1:] for q, r in [('"', '"'), ("“", "”")]))
    assert parse_evolved(f"#Rewritten Prompt#:\n{x}") == (x, None)


# -- one evolution step ---------------------------------------------------------------------------------------
def test_evolve_sends_the_operations_prompt_and_parses_the_reply():
    backend = FakeBackend(replies=["Sure! Here is the rewritten prompt:\n\"Sort 10 integers in O(n log n).\""])
    client = LLMClient(backend)
    evo = asyncio.run(evolve(client, "Sort a list.", "", "constraints", rng=random.Random(0), temperature=0.5,
                             max_tokens=99))
    req = backend.requests[0]
    assert req["purpose"] == "evolve" and req["temperature"] == 0.5 and req["max_tokens"] == 99
    expected_prompt, template = get_operation("constraints").build_prompt("Sort a list.")
    assert req["messages"] == [{"role": "user", "content": expected_prompt}]
    assert evo.prompt == expected_prompt
    assert evo.instruction == "Sort 10 integers in O(n log n)."
    assert evo.input == ""
    assert evo.template.name == "en/constraints"
    assert evo.template.version == load_template("constraints", "en").version
    assert evo.raw_output.startswith("Sure!")


def test_evolve_keeps_the_parents_input_unless_the_model_writes_a_new_one():
    client = LLMClient(FakeBackend(replies=["#Rewritten Prompt#:\nSummarise it in 2 sentences.",
                                            "#Rewritten Prompt#:\nSummarise the rows.\n#Input#:\n| a |\n| 1 |"]))
    kept = asyncio.run(evolve(client, "Summarise it.", "Cats sleep a lot.", "deepen"))
    assert kept.input == "Cats sleep a lot."
    assert "Summarise it.\n#Input#:\nCats sleep a lot." in kept.prompt
    new = asyncio.run(evolve(client, "Summarise it.", "Cats sleep a lot.", "complicate_input"))
    assert (new.instruction, new.input) == ("Summarise the rows.", "| a |\n| 1 |")


def test_evolve_uses_the_korean_template_for_korean():
    backend = FakeBackend(replies=["물론입니다! 다음은 다시 쓴 프롬프트입니다:\n피보나치 수열을 재귀 없이 구현하세요."])
    evo = asyncio.run(evolve(LLMClient(backend), "피보나치 수열을 구현하세요.", "", "reasoning", language="ko"))
    assert evo.template.name == "ko/reasoning"
    assert "한국어로" in backend.requests[0]["messages"][0]["content"]
    assert evo.instruction == "피보나치 수열을 재귀 없이 구현하세요."
