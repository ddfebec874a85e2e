"""The eliminator: the paper's four rules (cheap checks first, then the LLM Equal / Not Equal judge only
where they passed), the novelty and quality filters, English and Korean word lists, switches and
thresholds from RunConfig.rules, every verdict stored as a `rule:<id>` score row."""
from __future__ import annotations

import asyncio

import pytest
from conftest import openai_backend_for

from evolab.engine import eliminator as el
from evolab.engine import pipeline
from evolab.engine.eliminator import all_rule_ids
from evolab.llm import FakeBackend, LLMClient, LLMError, scripted_reply
from evolab.llm.fake import given_prompt
from evolab.schema import RuleConfig, RunConfig, Seed


# -- cheap checks ---------------------------------------------------------------------------------------
def test_unchanged_identical_near_identical_and_empty():
    assert not el.check_unchanged("Sort a list.", "Sort a list.").passed
    v = el.check_unchanged("Sort a list of numbers.", "sort a list of numbers!")  # case and punctuation only
    assert (v.rule, v.passed, v.detail) == ("no_new_information", False, "identical to the parent")
    v = el.check_unchanged("Explain how a bicycle gear system works for a beginner.",
                           "Explain how a bicycle gear system works for beginners.")
    assert not v.passed and "near-identical" in v.detail
    assert not el.check_unchanged("Sort a list.", "").passed
    assert "no instruction" in el.check_unchanged("Sort a list.", "   ").detail
    v = el.check_unchanged("Sort a list.", "Sort a list of 10 integers in descending order without built-ins.")
    assert v.passed and "similarity" in v.detail


def test_unchanged_threshold_is_configurable_and_input_counts():
    parent, child = "Explain photosynthesis.", "Explain photosynthesis briefly."
    ratio = float(el.check_unchanged(parent, child).detail.split()[-1])
    assert el.check_unchanged(parent, child, near_identical_ratio=ratio - 0.01).passed is False
    assert el.check_unchanged(parent, child, near_identical_ratio=min(1.0, ratio + 0.02)).passed is True
    # Same instruction, new input: information was added.
    assert el.check_unchanged("Summarise.", "Summarise.", parent_input="",
                              child_input="A long new table of sales data for 2023 and 2024").passed


@pytest.mark.parametrize("instruction, language", [
    ("Make the given prompt harder by adding a constraint.", "en"),
    ("#Rewritten Prompt#: Sort a list.", "en"),
    ("Here is the rewritten prompt you asked for: sort a list", "en"),
    ("The created prompt asks for a poem.", "en"),
    ("주어진 프롬프트를 더 어렵게 만드세요.", "ko"),
    ("다시 쓴 프롬프트: 정렬하세요.", "ko"),
    ("Rewrite the given prompt.", "ko"),  # English leak words count in Korean runs too
])
def test_prompt_leak_words_in_english_and_korean(instruction, language):
    v = el.check_prompt_leak(instruction, language)
    assert (v.rule, v.passed) == ("prompt_leak", False)
    assert "copies" in v.detail


def test_prompt_leak_passes_a_clean_instruction():
    assert el.check_prompt_leak("Write a prompt-free haiku about autumn.").passed
    assert el.check_prompt_leak("가을에 대한 시를 쓰세요.", "ko").passed


@pytest.mark.parametrize("response, language", [
    ("I'm sorry, but I can't help with that.", "en"),
    ("Sorry, I cannot answer this question.", "en"),
    ("As an AI language model, I do not have personal opinions.", "en"),
    ("Unfortunately, I am unable to browse the internet.", "en"),
    ("죄송하지만 그 요청은 도와드릴 수 없습니다.", "ko"),
    ("AI로서 저는 개인적인 의견이 없습니다.", "ko"),
    ("이 질문에는 답변드릴 수 없습니다.", "ko"),
])
def test_refusal_phrases_in_english_and_korean(response, language):
    v = el.check_refusal(response, language)
    assert (v.rule, v.passed) == ("refusal", False)
    assert "refusal" in v.detail and "words" in v.detail


def test_refusal_must_be_short_and_the_word_limit_is_configurable():
    # A refusal that opens a long, real answer is not a refusal (the paper's "< 80 words").
    long_answer = "I'm sorry, but I can't give personal advice. " + " ".join(["detail"] * 100)
    assert el.check_refusal(long_answer).passed
    opening = ("I'm sorry, but I cannot write your company's policy. A strong password has at least twelve "
               "characters, mixes upper and lower case letters, digits and symbols, avoids dictionary words and "
               "personal details, and is never reused across sites.")  # 38 words
    assert not el.check_refusal(opening, max_words=80).passed
    assert el.check_refusal(opening, max_words=38).passed  # "< max_words", as in the paper's "< 80 words"
    # A refusal with nothing else is one at any length.
    assert not el.check_refusal("Sorry, I cannot do that for you right now.", max_words=5).passed
    assert el.check_refusal("Here is a full answer about gears.").passed


@pytest.mark.parametrize("response, language", [
    ("", "en"), ("   ", "en"), ("...", "en"), ("?!", "en"), ("Well, it is what it is.", "en"),
    ("Okay. Sure, yes.", "en"), ("그리고 또는 네.", "ko"), ("음... 아", "ko"), ("The and of.", "ko"),
])
def test_empty_response_only_punctuation_and_stop_words(response, language):
    v = el.check_empty_response(response, language)
    assert (v.rule, v.passed) == ("empty_response", False)
    assert v.detail in ("empty", "only punctuation and stop words")


@pytest.mark.parametrize("response, language", [("42", "en"), ("Paris.", "en"), ("서울입니다.", "ko"),
                                                ("It is Paris.", "en")])
def test_a_short_real_answer_is_not_empty(response, language):
    assert el.check_empty_response(response, language).passed


@pytest.mark.parametrize("instruction, language", [
    ("#Rewritten Prompt#: Explain NPV with an example.", "en"),
    ("Following the given prompt, explain NPV.", "en"),
    ("주어진 프롬프트를 바탕으로 NPV를 설명하세요.", "ko"),
    ("재작성된 프롬프트: 환율 위험을 설명하세요.", "ko"),
])
def test_prompt_leak_catches_the_evolving_prompts_words_in_both_languages(instruction, language):
    assert not el.check_prompt_leak(instruction, language).passed


@pytest.mark.parametrize("instruction, language", [
    ("Explain how a prompt payment discount changes the cost of trade credit.", "en"),
    ("신속한 프롬프트 엔지니어링 기법 세 가지를 설명하세요.", "ko"),
])
def test_prompt_leak_leaves_ordinary_instructions_alone(instruction, language):
    assert el.check_prompt_leak(instruction, language).passed


# -- the LLM equality judge ---------------------------------------------------------------------------------
@pytest.mark.parametrize("reply, expected", [
    ("Equal", True), ("equal.", True), ("They are Equal", True), ("Not Equal", False), ("not equal", False),
    ("NOT EQUAL - the second adds a constraint", False), ("The two are not the same.", False),
    ("같습니다", True), ("두 지시문은 같지 않습니다.", False), ("다릅니다", False), ("I am not sure.", None),
    ("동일하지 않습니다", False), ("동일합니다", True), ("", None),
])
def test_parse_equal(reply, expected):
    assert el.parse_equal(reply) is expected


def test_judge_equal_asks_the_papers_question():
    backend = FakeBackend(replies=["Equal"])
    v = asyncio.run(el.judge_equal(LLMClient(backend), "Sort a list.", "Sort the list."))
    assert (v.rule, v.passed, v.judge) == ("no_new_information", False, "fake")
    assert "Equal" in v.detail
    prompt = backend.requests[0]["messages"][0]["content"]
    assert "The First Prompt:\nSort a list." in prompt and "The Second Prompt:\nSort the list." in prompt
    assert "same constraints and requirements" in prompt and "depth and breadth" in prompt
    assert backend.requests[0]["purpose"] == "equal" and backend.requests[0]["temperature"] == 0.0


@pytest.mark.parametrize("replies, passed, unreadable, word", [
    (["Not Equal"], True, False, "Not Equal"),
    (["Hmm?", "Not Equal"], True, False, "Not Equal"),  # read on the stricter retry
    (["Hmm?", "Hard to say."], False, True, "unreadable"),  # never guessed either way
    ([LLMError("HTTP 503")], True, False, "judge failed"),
])
def test_judge_equal_keeps_the_child_unless_it_says_equal(replies, passed, unreadable, word):
    v = asyncio.run(el.judge_equal(LLMClient(FakeBackend(replies=replies)), "A", "B"))
    assert v.passed is passed and v.unreadable is unreadable and word in v.detail


def test_korean_equal_prompt():
    backend = FakeBackend(replies=["Not Equal"])
    asyncio.run(el.judge_equal(LLMClient(backend), "정렬하세요.", "오름차순으로 정렬하세요.", language="ko"))
    assert "첫 번째 프롬프트" in backend.requests[0]["messages"][0]["content"]


# -- novelty and quality filters ------------------------------------------------------------------------------
def test_duplicate_filter_uses_rouge_l_threshold():
    kept = ["Explain how photosynthesis works in green plants."]
    v = el.check_duplicate("Explain how photosynthesis works in plants.", kept)
    assert (v.rule, v.passed) == ("duplicate", False) and "ROUGE-L" in v.detail
    assert el.check_duplicate("Compose a sonnet about quantum entanglement.", kept).passed
    assert el.check_duplicate("Explain how photosynthesis works in plants.", kept, rouge_l_max=0.99).passed
    assert el.check_duplicate("anything", []).passed


def test_quality_filter_threshold_and_missing_score():
    assert not el.check_quality(4.0).passed
    assert el.check_quality(4.5).passed
    assert el.check_quality(3.0, minimum=3.0).passed
    v = el.check_quality(None)
    assert not v.passed and "no readable quality score" in v.detail  # with the filter on, missing fails


# -- in a run, against the stub server ------------------------------------------------------------------------
MARKERS = ("ECHO", "LEAK", "REFUSE", "EMPTY", "SAME", "PLAIN")
SEEDS = {
    "ECHO": "ECHO Describe the life cycle of a butterfly.",
    "LEAK": "LEAK Summarise the causes of the French Revolution.",
    "REFUSE": "REFUSE Explain how to pick a strong password.",
    "EMPTY": "EMPTY List the planets of the solar system.",
    "SAME": "SAME Describe how a refrigerator keeps food cold.",
    "PLAIN": "PLAIN Explain why the sky is blue.",
}


def rule_handler(messages, purpose):
    """A model that fails in a chosen way for each marked seed, and cooperates otherwise."""
    text = messages[-1]["content"]
    if purpose == "evolve":
        given = given_prompt(messages)
        if "ECHO" in given:
            return f"#Rewritten Prompt#:\n{given}"
        if "LEAK" in given:
            return f"#Rewritten Prompt#:\nRewrite the given prompt so that it asks: {given}"
    if purpose == "respond" and "REFUSE" in text:
        # A refusal that opens a 38-word answer: short under the paper's 80 words.
        return ("I'm sorry, but I cannot write your company's policy. A strong password has at least twelve "
                "characters, mixes upper and lower case letters, digits and symbols, avoids dictionary words and "
                "personal details, and is never reused across sites.")
    if purpose == "respond" and "EMPTY" in text:
        return "Well, it is what it is."
    if purpose == "equal" and "SAME" in text.split("The Second Prompt:")[-1]:
        return "Equal"
    return scripted_reply(messages, purpose)


def start(store, stub, seeds, **cfg):
    config = RunConfig(model="gpt-4o-mini", base_url=stub.base_url, **{"rounds": 1, "concurrency": 4, **cfg})
    run_id = pipeline.create_run(store, [Seed(s) for s in seeds], config)
    status = pipeline.run_sync(store, run_id, backend=openai_backend_for(stub))
    return run_id, status


def children_by_marker(store, run_id, round_=1):
    out = {}
    for n in store.nodes(run_id):
        if n.round == round_:
            out[next(m for m in MARKERS if m in n.instruction)] = n
    return out


def test_cheap_checks_first_and_the_equal_judge_only_where_they_passed(stub, store):
    stub.handler = rule_handler
    run_id, status = start(store, stub, SEEDS.values())
    assert status == "finished"
    kids = children_by_marker(store, run_id)
    got = {m: (n.status, n.rule) for m, n in kids.items()}
    assert got == {"ECHO": ("eliminated", "no_new_information"), "LEAK": ("eliminated", "prompt_leak"),
                   "REFUSE": ("eliminated", "refusal"), "EMPTY": ("eliminated", "empty_response"),
                   "SAME": ("eliminated", "no_new_information"), "PLAIN": ("kept", None)}
    assert kids["ECHO"].detail == "identical to the parent"
    assert "judge says Equal" in kids["SAME"].detail

    # The equality judge was asked only about the two children that passed every cheap check.
    equal_prompts = [r["body"]["messages"][-1]["content"] for r in stub.chat_requests("equal")]
    assert stub.count("equal") == 2
    assert sorted(next(m for m in MARKERS if m in p.split("The Second Prompt:")[-1]) for p in equal_prompts) \
        == ["PLAIN", "SAME"]
    # Instruction checks come before the answer: no answer for ECHO's or LEAK's child.
    respond_prompts = [r["body"]["messages"][-1]["content"] for r in stub.chat_requests("respond")]
    assert stub.count("respond") == len(SEEDS) + 4
    assert sum("ECHO" in p for p in respond_prompts) == 1 and sum("LEAK" in p for p in respond_prompts) == 1
    assert kids["ECHO"].response is None and kids["LEAK"].response is None
    # Scores only for what survived: the six seeds and PLAIN's child.
    assert stub.count("difficulty") == stub.count("quality") == len(SEEDS) + 1


def test_every_verdict_is_stored_with_its_rule_and_a_detail(stub, store):
    stub.handler = rule_handler
    run_id, _ = start(store, stub, SEEDS.values())
    kids = children_by_marker(store, run_id)
    rows: dict[str, list] = {}
    for s in store.scores(run_id):
        if s.metric.startswith("rule:"):
            rows.setdefault(s.node_id, []).append(s)
    for marker, node in kids.items():
        verdicts = rows[node.id]
        assert all(s.detail for s in verdicts), marker
        assert {s.metric for s in verdicts} <= {f"rule:{r}" for r in all_rule_ids()}
        if node.status == "eliminated":
            (failed,) = [s for s in verdicts if s.value == 0.0]  # the first failed rule ends the checks
            assert failed.metric == f"rule:{node.rule}" and failed.detail == node.detail
        else:
            assert all(s.value == 1.0 for s in verdicts)
            assert sorted((s.metric, s.judge) for s in verdicts) == [
                ("rule:empty_response", "heuristic"), ("rule:language_drift", "heuristic"),
                ("rule:language_drift", "heuristic (answer)"), ("rule:no_new_information", "gpt-4o-mini"),
                ("rule:no_new_information", "heuristic"), ("rule:off_topic", "heuristic"),
                ("rule:prompt_leak", "heuristic"), ("rule:refusal", "heuristic"), ("rule:truncated", "heuristic")]
    # The judge's verdict names the model that gave it; the cheap one is labelled heuristic.
    same = {s.judge: s for s in rows[kids["SAME"].id] if s.metric == "rule:no_new_information"}
    assert same["gpt-4o-mini"].value == 0.0 and same["heuristic"].value == 1.0
    assert [s.judge for s in rows[kids["LEAK"].id] if s.metric == "rule:prompt_leak"] == ["heuristic"]
    # Seeds are not judged.
    seeds = [n for n in store.nodes(run_id) if n.round == 0]
    assert all(s.id not in rows for s in seeds)


@pytest.mark.parametrize("switch, marker", [
    ({"no_new_information": False}, "ECHO"), ({"prompt_leak": False}, "LEAK"), ({"refusal": False}, "REFUSE"),
    ({"empty_response": False}, "EMPTY"), ({"use_equal_judge": False}, "SAME"),
])
def test_each_rule_can_be_switched_off(stub, store, switch, marker):
    stub.handler = rule_handler
    run_id, _ = start(store, stub, [SEEDS[marker], SEEDS["PLAIN"]], rules=RuleConfig(**switch))
    kids = children_by_marker(store, run_id)
    assert kids[marker].status == "kept", kids[marker].detail
    rows = [s for s in store.scores(run_id) if s.metric.startswith("rule:")]
    (name,) = switch
    if name == "use_equal_judge":
        assert stub.count("equal") == 0
        assert {s.judge for s in rows if s.metric == "rule:no_new_information"} == {"heuristic"}
    else:
        assert not [s for s in rows if s.metric == f"rule:{name}"]  # a rule that is off gives no verdict
        if name == "no_new_information":
            assert stub.count("equal") == 0  # the judge is part of rule 1
        else:
            assert stub.count("equal") == 2


def test_thresholds_come_from_the_run_config(stub, store):
    stub.handler = rule_handler
    # The answer counts 38 words: with refusal_max_words=38 its opening refusal is not "short" any more.
    run_id, _ = start(store, stub, [SEEDS["REFUSE"]], rules=RuleConfig(refusal_max_words=39))
    assert children_by_marker(store, run_id)["REFUSE"].rule == "refusal"
    run_id, _ = start(store, stub, [SEEDS["REFUSE"]], rules=RuleConfig(refusal_max_words=38))
    assert children_by_marker(store, run_id)["REFUSE"].status == "kept"
    # A very low similarity ratio makes the cooperative child (the parent plus a clause) "near-identical".
    run_id, _ = start(store, stub, [SEEDS["PLAIN"]], rules=RuleConfig(near_identical_ratio=0.3))
    kid = children_by_marker(store, run_id)["PLAIN"]
    assert (kid.status, kid.rule) == ("eliminated", "no_new_information") and "near-identical" in kid.detail
    stored = store.get_run(run_id)["config"].rules
    assert stored.near_identical_ratio == 0.3


def test_an_eliminated_child_leaves_its_parent_in_the_pool(stub, store):
    stub.handler = rule_handler
    run_id, _ = start(store, stub, [SEEDS["ECHO"], SEEDS["REFUSE"], SEEDS["PLAIN"]], rounds=3)
    nodes = store.nodes(run_id)
    by_id = {n.id: n for n in nodes}
    seeds = {next(m for m in MARKERS if m in n.instruction): n for n in nodes if n.round == 0}
    for marker in ("ECHO", "REFUSE"):
        kids = [n for n in nodes if n.root_id == seeds[marker].id and n.round > 0]
        # Every round evolves the seed again: each of its children was eliminated.
        assert sorted(n.round for n in kids) == [1, 2, 3]
        assert all(n.parent_id == seeds[marker].id and n.status == "eliminated" for n in kids)
    plain = sorted((n for n in nodes if n.root_id == seeds["PLAIN"].id and n.round > 0), key=lambda n: n.round)
    assert [by_id[n.parent_id].round for n in plain] == [0, 1, 2]  # kept children carry the lineage on


def test_korean_rules_in_a_korean_run(stub, store):
    def handler(messages, purpose):
        text = messages[-1]["content"]
        if purpose == "evolve" and "누설" in given_prompt(messages):
            return "#Rewritten Prompt#:\n주어진 프롬프트를 바탕으로 누설에 대해 설명하세요."
        if purpose == "respond" and "거절" in text:
            return "죄송하지만 그 요청은 도와드릴 수 없습니다."
        if purpose == "respond" and "공백" in text:
            return "그리고 또는 네."
        return scripted_reply(messages, purpose)

    stub.handler = handler
    seeds = ["누설 정보 보안의 기본을 설명하세요.", "거절 비밀번호를 만드는 방법을 설명하세요.", "공백 태양계의 행성을 나열하세요."]
    run_id, _ = start(store, stub, seeds)
    kids = {n.instruction.split()[0]: n for n in store.nodes(run_id) if n.round == 1}
    assert {k: (n.language, n.rule) for k, n in kids.items()} == {
        "주어진": ("ko", "prompt_leak"), "거절": ("ko", "refusal"), "공백": ("ko", "empty_response")}
