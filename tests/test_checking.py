"""Checked answers (evolab/engine/checking.py): what can be checked, reading the final number, self-consistency on the
stub server, the store rows, the share per round, the CLI and the export filter."""
from __future__ import annotations

import asyncio
import itertools
import json
import math
import random
import re
from pathlib import Path

import pytest
from conftest import openai_backend_for

from evolab.engine import checking
from evolab.engine.checking import (
    CONSISTENT,
    INCONSISTENT,
    NOT_CHECKABLE,
    Reading,
    agree,
    compare,
    consistent_share,
    detect_checkable,
    extract_final_number,
)
from evolab.llm import LLMClient
from evolab.schema import Node, RunConfig, Seed
from evolab.testing.stub_server import StubServer

CORPUS = Path(__file__).parent / "data" / "checking" / "extraction.jsonl"
ITEMS = [json.loads(line) for line in CORPUS.read_text(encoding="utf-8").splitlines() if line.strip()]


# -- reading the final number --------------------------------------------------------------------------------------
def test_corpus_is_big_enough_in_both_languages():
    langs = [it["language"] for it in ITEMS]
    assert len(ITEMS) >= 30 and langs.count("en") >= 12 and langs.count("ko") >= 12


@pytest.mark.parametrize("item", ITEMS, ids=[f"{it['language']}-{it['note']}" for it in ITEMS])
def test_final_number_of_realistic_answers(item):
    reading = extract_final_number(item["text"], item["language"])
    assert reading.value is not None, reading.rule
    assert math.isclose(reading.value, item["expected"], rel_tol=1e-9), reading.describe()
    assert reading.percent == item["percent"]
    assert reading.rule and reading.token  # how it was read is kept for a person to audit
    assert reading.token.replace(" ", "") in item["text"].replace(" ", "").replace("{,}", ",").replace("\\", "")


@pytest.mark.parametrize("text, value", [
    ("1억 2천만 원", 120_000_000), ("약 1,234만 원", 12_340_000), ("3천 5백만 원", 35_000_000),
    ("2.5억", 250_000_000), ("₩1,200,000", 1_200_000), ("1조 884억 원", 1_088_400_000_000),
    ("5천원", 5_000), ("300만원", 3_000_000), ("-350만 원", -3_500_000),
])
def test_korean_units_become_plain_numbers(text, value):
    assert extract_final_number(f"따라서 금액은 {text}입니다.", "ko").value == value


@pytest.mark.parametrize("text, value", [
    ("The total is 1,234,567.", 1234567), ("The total is 1,234.5.", 1234.5), ("It is 12,5%.", 12.5),
    ("It is 1.234,56 €.", 1234.56), ("The balance is (1,234).", -1234), ("The balance is −1,234.", -1234),
    ("The balance is $-1,234.", -1234), ("The price is $12k.", 12000), ("It costs $3.4 billion.", 3.4e9),
    ("The rate is .5", 0.5),
])
def test_separators_signs_and_scales(text, value):
    assert extract_final_number(text, "en").value == pytest.approx(value)


def test_the_final_answer_sentence_wins_over_intermediate_steps():
    answer = ("Step 1: 1,000 × 1.05 = 1,050\nStep 2: 1,050 × 1.05 = 1,102.50\nStep 3: 1,102.50 × 1.05 = 1,157.63\n\n"
              "Therefore, after 3 years at 5% the balance is $1,157.63.\n\n"
              "Let me know if you want a table for 10 years.")
    reading = extract_final_number(answer, "en")
    assert reading.value == pytest.approx(1157.63) and reading.rule.startswith("conclusion")


def test_years_list_markers_and_step_labels_are_not_answers():
    assert extract_final_number("In 2023, sales rose.\n1. Growth was 8%.", "en").value == 8
    assert extract_final_number("2024년 매출 증가율은 12%입니다.", "ko").value == 12
    assert extract_final_number("10만큼 크다", "ko").value == 10  # 만큼 is a word, not the unit 만
    # digits inside words and unit letters are not answers or scales
    assert extract_final_number("Here is a careful answer: point42 and point7. It depends.", "en").value is None
    assert extract_final_number("Water is H2O; the room is 5m wide.", "en").value == 5
    assert extract_final_number("Revenue is $2.5M.", "en").value == 2.5e6


@pytest.mark.parametrize("text", ["", "   ", "I cannot compute that without the cash flows.",
                                  "죄송하지만 현금흐름 정보가 없어 계산할 수 없습니다."])
def test_no_number_is_none_never_a_guess(text):
    reading = extract_final_number(text)
    assert reading.value is None and reading.rule


def test_model_text_is_never_evaluated(monkeypatch):
    """An answer that is an expression is read as text: the number after '=' is taken, nothing is run."""
    import builtins

    def refuse(*a, **k):
        raise AssertionError("model text must never be evaluated")

    monkeypatch.setattr(builtins, "eval", refuse)
    monkeypatch.setattr(builtins, "exec", refuse)
    assert extract_final_number("Answer: __import__('os').system('rm -rf /') = 0", "en").value == 0
    assert extract_final_number("The answer is 2**10", "en").value != 1024  # read as text, not computed


# -- what can be checked ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("instruction", [
    "Calculate the NPV of a project costing $10,000 with cash flows of $3,000, $4,000 and $5,000 at 8%.",
    "What is the monthly payment on a $200,000 mortgage at 6% over 30 years?",
    "If you invest $5,000 at 4% compounded monthly, how much will you have after 3 years?",
    "A store sells pencils at 3 for $1. How many pencils can Sam buy with $7?",
    "Find the IRR of the cash flows -1000, 400, 400, 400.",
    "A shirt costs $40 and is on sale for 25% off. What is the sale price?",
    "What is the total monthly cost of the plan below?",
    "1억 원을 연 4%로 3년간 대출받았을 때 단리 이자는 얼마입니까?",
    "초기 투자 1,000만 원, 할인율 8%일 때 순현재가치를 계산하세요.",
    "사과 24개씩 5상자 중 18개가 상했다면 먹을 수 있는 사과는 몇 개입니까?",
    "Calculate the compound interest on $1,000 at 5% for 2 years and explain each step.",
    # from the shipped finance seeds (evolab/data/finance.jsonl)
    "Estimate the price change of a 10-year bond with modified duration 7.8 and convexity 70 if its yield rises "
    "by 100 basis points.",
    "Price a European call option with the Black-Scholes model using the inputs below.",
    "채권 듀레이션이 무엇인지 설명하고, 수정 듀레이션이 6인 채권은 금리가 1%포인트 오를 때 가격이 대략 얼마나 변하는지 "
    "계산해 주세요.",
])
def test_numeric_tasks_are_checkable(instruction):
    assert detect_checkable(instruction).checkable


@pytest.mark.parametrize("instruction", [
    "Write an essay on the history of interest rates.",
    "Write a Python function that computes the NPV of a list of cash flows.",
    "Explain the difference between NPV and IRR.",
    "Describe how compound interest works to a child.",
    "Write a poem about autumn.",
    "복리의 개념을 설명하세요.",
    "순현재가치를 계산하는 파이썬 함수를 작성하세요.",
    "가을에 대한 시를 한 편 써 주세요.",
    "Summarize the main arguments of the article.",
    # from the shipped finance seeds: "예시를" holds 시를 (a poem) but is not one; a concept question
    "연말정산에서 소득공제와 세액공제의 차이를 구체적인 숫자 예시를 들어 설명해 주세요.",
    "What is the difference between revenue and profit? Give a simple example.",
    "Explain the 50/30/20 budgeting rule and apply it to a monthly take-home pay of $3,200.",
])
def test_essays_explanations_and_code_are_not_checkable(instruction):
    detection = detect_checkable(instruction)
    assert not detection.checkable and detection.reason


def test_a_numeric_question_whose_answer_has_no_number_is_not_checkable():
    detection = detect_checkable("How much is 15% of 80?", "It depends on what you mean by percent.")
    assert not detection.checkable and "no final number" in detection.reason


# -- comparing -------------------------------------------------------------------------------------------------
def test_tolerance_and_percentages():
    r = lambda v, p=False: Reading(v, p, "t", "")  # noqa: E731
    assert agree(r(1234.56), r(1235))  # rounding, within 1%
    assert not agree(r(1234.56), r(1300))
    assert agree(r(12.5, True), r(0.125)) and agree(r(12.5, True), r(12.5))
    assert not agree(r(12.5, True), r(0.2))
    assert agree(r(-1234), r(-1234.0)) and not agree(r(-1234), r(1234))
    assert agree(r(0.0), r(0.0))
    assert not agree(r(None), r(None))


def test_majority_rule():
    r = lambda v: Reading(v, False, "t", "")  # noqa: E731
    assert compare(r(100), [r(100), r(100), r(100)]).status == CONSISTENT
    two = compare(r(100), [r(100), r(100.4), r(93)])
    assert two.status == CONSISTENT and two.agreeing == 2
    assert compare(r(100), [r(100), r(93), r(91)]).status == INCONSISTENT
    assert compare(r(100), [r(93), r(93), r(93)]).status == INCONSISTENT  # the samples agree, not with the answer
    assert compare(r(100), [r(100), r(100)]).status == CONSISTENT
    assert compare(r(100), [r(100), r(93)]).status == INCONSISTENT  # 1 of 2 is not a majority
    missing = compare(r(100), [r(100), r(None), r(100)])
    assert missing.status == NOT_CHECKABLE and "sample 2" in missing.reason
    assert compare(r(None), [r(100)] * 3).status == NOT_CHECKABLE


# -- self-consistency on the stub server -----------------------------------------------------------------------
AGREES = "A savings account holds $1,000 at 5% compounded yearly. How much is in it after 2 years?"
DISAGREES = "A bakery sells 3 kinds of bread at different prices. How much does Mina spend on 7 loaves?"
KO_AGREES = "1억 원을 연 4% 단리로 3년간 빌리면 이자는 얼마입니까?"
KO_DISAGREES = "학생 몇 명이 버스 여러 대에 나누어 탑니다. 모두 몇 명입니까?"
ESSAY = "Write an essay about why saving money matters."
NO_NUMBER = "How much should a student save each month?"


def answering_handler(seed: int = 0):
    """Answers like a model sampled at temperature 0.7: the same number for AGREES and KO_AGREES (worded
    differently, seeded choice), a different number every time for DISAGREES, no number for NO_NUMBER."""
    rng = random.Random(seed)
    prices = itertools.count(17.5, 3.5)
    pupils = itertools.count(30, 7)

    def handler(messages, purpose):
        text = messages[-1]["content"]
        if purpose not in ("respond", "check"):
            return "OK"
        if AGREES in text:
            return rng.choice(["1,000 × 1.05² = 1,102.50\n\nTherefore, the balance is $1,102.50.",
                               "Year 1: 1,050. Year 2: 1,102.5.\n\n**Answer: $1,102.50**",
                               "$$\\boxed{1102.5}$$"])
        if KO_AGREES in text:
            return rng.choice(["이자는 1억 × 0.04 × 3 = 1,200만 원입니다.", "정답: 12,000,000원",
                               "따라서 이자는 약 1천2백만 원입니다."])
        if DISAGREES in text:
            return f"Mina spends ${next(prices):.2f} in total."  # a new total every time: never a majority
        if KO_DISAGREES in text:
            return f"따라서 학생은 모두 {next(pupils)}명입니다."
        if NO_NUMBER in text:
            return "It depends on income and goals; saving something every month is what matters."
        return "Saving money matters because it gives you choices."

    return handler


def answered_run(store, items, language="en"):
    seeds = [Seed(instruction=i) for i in items]
    run_id = store.create_run(RunConfig(model="gpt-4o-mini", base_url="http://127.0.0.1:9/v1", rounds=1), seeds)
    nodes = []
    for i, (instruction, answer) in enumerate(items.items()):
        nodes.append(Node(id=f"n{i}", run_id=run_id, parent_id=None, root_id=f"n{i}", round=0, operation="seed",
                          instruction=instruction, response=answer, status="seed",
                          language="ko" if re.search("[가-힣]", instruction) else "en"))
    store.save_nodes(nodes)
    return run_id


def _check(store, stub, run_id, **kw):
    async def go():
        client = LLMClient(openai_backend_for(stub), store, run_id=run_id)
        try:
            return await checking.check_run(store, client, run_id, **kw)
        finally:
            await client.aclose()
    return asyncio.run(go())


def test_consistency_on_the_stub(store):
    items = {AGREES: "The balance after 2 years is $1,102.50.", KO_AGREES: "따라서 이자는 1,200만 원입니다.",
             DISAGREES: "Mina spends $24.50 in total.", ESSAY: "Saving matters.",
             NO_NUMBER: "Save 10% of what you earn, about $50 for most students.",
             KO_DISAGREES: "정답: 44명"}
    run_id = answered_run(store, items)
    with StubServer(handler=answering_handler(seed=1)) as stub:
        counts = _check(store, stub, run_id)
        asked = stub.count("check")
    rows = {r["node_id"]: r for r in store.answer_checks([run_id])}
    assert rows["n0"]["status"] == CONSISTENT and rows["n0"]["agreeing"] == 3
    assert rows["n1"]["status"] == CONSISTENT and rows["n1"]["answer_value"] == 12_000_000
    assert rows["n2"]["status"] == INCONSISTENT and rows["n2"]["agreeing"] < 2
    assert rows["n3"]["status"] == NOT_CHECKABLE and "essay" in rows["n3"]["reason"]
    # its question asks "how much" and its answer has a number, but the samples name none: asked, not comparable
    assert rows["n4"]["status"] == NOT_CHECKABLE
    assert "no number read from sample 1, sample 2, sample 3" in rows["n4"]["reason"]
    assert rows["n5"]["status"] == INCONSISTENT and rows["n5"]["answer_value"] == 44
    assert counts == {CONSISTENT: 2, INCONSISTENT: 2, NOT_CHECKABLE: 2, "failed": 0}
    assert asked == 5 * 3  # k samples for each checkable item: k requests, not one cached reply k times
    # how each number was read is stored: rule, matched text and the number's own text, per sample
    readings = rows["n0"]["readings"]
    assert [r["source"] for r in readings] == ["answer", "sample 1", "sample 2", "sample 3"]
    assert all(r["rule"] and r["token"] and r["value"] == pytest.approx(1102.5) for r in readings)
    assert all("text" in r for r in readings[1:])
    assert rows["n0"]["k"] == 3 and rows["n0"]["temperature"] == 0.7 and rows["n0"]["tolerance"] == 0.01
    calls = [c for c in store.calls(run_id) if c.purpose == "check"]
    assert len(calls) == 15 and {c.node_id for c in calls} == {"n0", "n1", "n2", "n4", "n5"}


def test_checking_again_reads_the_samples_from_the_cache(store):
    run_id = answered_run(store, {DISAGREES: "Mina spends $24.50 in total."})
    with StubServer(handler=answering_handler(seed=3)) as stub:
        _check(store, stub, run_id, k=4)
        first = store.answer_checks([run_id])[0]
        assert _check(store, stub, run_id, k=4) == {CONSISTENT: 0, INCONSISTENT: 0, NOT_CHECKABLE: 0, "failed": 0}
        _check(store, stub, run_id, k=4, recheck=True)
        assert stub.count("check") == 4  # the recheck was answered from the cache
    again = store.answer_checks([run_id])[0]
    assert again["readings"] == first["readings"] and again["status"] == first["status"]
    assert len({r["value"] for r in first["readings"][1:]}) > 1  # four different samples, not one reply 4 times


def test_a_sample_without_a_number_makes_the_item_not_checkable(store):
    run_id = answered_run(store, {AGREES: "The balance after 2 years is $1,102.50."})
    replies = iter(["The balance is $1,102.50.", "It grows with interest every year.", "Answer: $1,102.50"])
    with StubServer(handler=lambda m, p: next(replies) if p == "check" else "OK") as stub:
        _check(store, stub, run_id)
    row = store.answer_checks([run_id])[0]
    assert row["status"] == NOT_CHECKABLE and re.search(r"sample \d", row["reason"])


def test_a_failed_sample_call_stores_no_verdict(store):
    run_id = answered_run(store, {AGREES: "The balance after 2 years is $1,102.50."})
    with StubServer(handler=answering_handler()) as stub:
        stub.fail_always = 500
        counts = _check(store, stub, run_id)
    assert counts["failed"] == 1 and store.answer_checks([run_id]) == []


def test_consistent_share_per_round(store):
    run_id = answered_run(store, {AGREES: "a", DISAGREES: "b", ESSAY: "c"})
    for node_id, round_ in (("n1", 1), ("n2", 1)):
        node = store.get_node(node_id)
        node.round, node.status, node.parent_id = round_, "kept", "n0"
        store.save_node(node)
    base = {"run_id": run_id, "k": 3}
    store.save_answer_check({**base, "node_id": "n0", "status": CONSISTENT})
    store.save_answer_check({**base, "node_id": "n1", "status": INCONSISTENT})
    store.save_answer_check({**base, "node_id": "n2", "status": NOT_CHECKABLE})
    df = consistent_share(store, [run_id])
    assert list(df.columns) == ["run_id", "round", "checked", "consistent", "inconsistent", "not_checkable", "share"]
    r0, r1 = df.iloc[0], df.iloc[1]
    assert (r0["round"], r0["checked"], r0["consistent"], r0["share"]) == (0, 1, 1, 1.0)
    assert (r1["round"], r1["checked"], r1["inconsistent"], r1["not_checkable"], r1["share"]) == (1, 1, 1, 1, 0.0)
    assert consistent_share(store, []).empty


# -- a run with --check-answers, `check` afterwards, and the export filter (the CLI, as a user runs it) ---------------
SEED_ITEMS = [AGREES, DISAGREES, KO_AGREES, ESSAY]


def run_handler():
    """A whole run: evolving keeps the question and adds a clause; answers as in `answering_handler`."""
    from evolab.llm.fake import given_prompt, scripted_reply

    answers = answering_handler(seed=5)

    def handler(messages, purpose):
        if purpose == "evolve":
            return f"#Rewritten Prompt#:\n{given_prompt(messages)} Show the calculation."
        if purpose in ("respond", "check"):
            return answers(messages, purpose)
        return scripted_reply(messages, purpose)

    return handler


@pytest.fixture
def cli_env(tmp_path):
    import os

    from conftest import free_port

    env = dict(os.environ, EVOLAB_HOME=str(tmp_path / "home"), EVOLAB_LOCAL_PORT=str(free_port()))
    env.pop("EVOLAB_DB", None)
    return env


def cli(env, *args):
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    return subprocess.run([sys.executable, "-m", "evolab", *map(str, args)], cwd=root, env=env, capture_output=True,
                          text=True, timeout=120)


def test_run_with_check_answers_then_export_the_consistent_ones(tmp_path, cli_env):
    from conftest import STUB_KEY, STUB_KEY_ENV

    from evolab.store import Store

    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text("".join(json.dumps({"instruction": s}, ensure_ascii=False) + "\n" for s in SEED_ITEMS),
                     encoding="utf-8")
    db = tmp_path / "run.db"
    with StubServer(handler=run_handler()) as stub:
        r = cli(cli_env, "run", seeds, "--db", db, "--rounds", 2, "--base-url", stub.base_url, "--model",
                "gpt-4o-mini", "--api-key-env", STUB_KEY_ENV, "--check-answers", "--check-k", 3)
        assert r.returncode == 0, r.stderr
        asked = stub.count("check")
    store = Store(db)
    try:
        run_id = store.latest_run_id()
        assert store.get_run(run_id)["config"].check_answers
        answered = [n for n in store.nodes(run_id) if n.status in ("seed", "kept") and n.response]
        rows = {r["node_id"]: r for r in store.answer_checks([run_id])}
        assert set(rows) == {n.id for n in answered}  # every answered seed and kept node, checked as it finished
        by_question = {}
        for n in answered:
            key = next(s for s in SEED_ITEMS if s in n.instruction)
            by_question.setdefault(key, set()).add(rows[n.id]["status"])
        assert by_question[AGREES] == {CONSISTENT} and by_question[KO_AGREES] == {CONSISTENT}
        assert by_question[DISAGREES] == {INCONSISTENT} and by_question[ESSAY] == {NOT_CHECKABLE}
        numeric = sum(1 for n in answered if ESSAY not in n.instruction)
        assert asked == 3 * numeric  # k calls per checkable item, none for the essay
        assert len([c for c in store.calls(run_id) if c.purpose == "check"]) == asked
        share = consistent_share(store, [run_id])
        assert list(share["round"]) == [0, 1, 2]
        assert list(share["share"]) == pytest.approx([2 / 3] * 3) and list(share["not_checkable"]) == [1, 1, 1]
    finally:
        store.close()
    assert STUB_KEY.encode() not in db.read_bytes()

    out = tmp_path / "consistent.jsonl"
    r = cli(cli_env, "export", "--db", db, "--format", "lineage", "--out", out, "--consistent-only")
    assert r.returncode == 0, r.stderr
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert records and all(AGREES in rec["instruction"] or KO_AGREES in rec["instruction"] for rec in records)
    assert {rec["answer_check"] for rec in records} == {CONSISTENT}  # the lineage format carries the check
    assert len(records) == 2 * 3  # two lineages x (seed + 2 rounds)
    r = cli(cli_env, "export", "--db", db, "--format", "alpaca", "--out", tmp_path / "a.json",
            "--checked", "inconsistent,not_checkable")
    assert r.returncode == 0 and len(json.loads((tmp_path / "a.json").read_text())) == 6
    r = cli(cli_env, "export", "--db", db, "--format", "alpaca", "--out", tmp_path / "b.json", "--checked", "right")
    assert r.returncode == 2 and "right" in r.stderr and "consistent" in r.stderr


def test_check_command_on_a_run_made_without_it(tmp_path, cli_env):
    from conftest import STUB_KEY_ENV

    seeds = tmp_path / "seeds.txt"
    seeds.write_text("\n".join(SEED_ITEMS) + "\n", encoding="utf-8")
    db = tmp_path / "run.db"
    with StubServer(handler=run_handler()) as stub:
        r = cli(cli_env, "run", seeds, "--db", db, "--rounds", 1, "--base-url", stub.base_url, "--model",
                "gpt-4o-mini", "--api-key-env", STUB_KEY_ENV)
        assert r.returncode == 0 and stub.count("check") == 0
        r = cli(cli_env, "check", "--db", db, "--k", 2)
        assert r.returncode == 0, r.stderr
        assert stub.count("check") == 2 * 6  # 3 numeric lineages x (seed + round 1) x k = 2
        assert "consistent 4" in r.stdout and "inconsistent 2" in r.stdout and "not_checkable 2" in r.stdout
        assert re.search(r"^\s+0\s+3\s+2\s+1\s+1\s+67%", r.stdout, re.M), r.stdout
        again = cli(cli_env, "check", "--db", db, "--k", 2)  # nothing left to check: no calls
        assert again.returncode == 0 and stub.count("check") == 12
    r = cli(cli_env, "check", "--db", db, "--k", 0)
    assert r.returncode == 2 and "--k" in r.stderr
    r = cli(cli_env, "check", "--db", tmp_path / "none.db")
    assert r.returncode == 2 and "No store" in r.stderr


def test_report_and_figure_show_the_share_per_round(store, tmp_path):
    from evolab.analysis import viz
    from evolab.analysis.report import write_report
    from evolab.engine.checking import share_with_intervals

    run_id = answered_run(store, {AGREES: "a", DISAGREES: "b"})
    node = store.get_node("n1")
    node.round, node.status, node.parent_id = 1, "kept", "n0"
    store.save_node(node)
    store.save_answer_check({"run_id": run_id, "k": 3, "node_id": "n0", "status": CONSISTENT})
    store.save_answer_check({"run_id": run_id, "k": 3, "node_id": "n1", "status": INCONSISTENT})
    frame = share_with_intervals(consistent_share(store, [run_id]))
    # hand-computed 95% Wilson interval for 1 of 1: [0.2065, 1]
    assert frame.loc[0, "low"] == pytest.approx(0.2065, abs=1e-4) and frame.loc[0, "high"] == 1.0
    assert frame["too_small"].all()
    fig = viz.consistency_figure(frame)
    assert list(fig.data[0].x) == [0, 1] and list(fig.data[0].y) == [1.0, 0.0]
    assert viz.is_empty_figure(viz.consistency_figure(frame.iloc[0:0]))
    html = write_report(store, run_id, tmp_path / "r.html").read_text(encoding="utf-8")
    assert "<h2>Checked answers</h2>" in html and "less reliable" in html and "too few checked answers" in html


def test_the_estimate_counts_k_more_answers_per_numeric_item():
    from evolab.engine.estimate import estimate_run

    seeds = [Seed(AGREES), Seed(KO_AGREES), Seed(ESSAY), Seed("Write a poem about rain.")]
    plain = RunConfig(model="gpt-4o-mini", rounds=2)
    checked = RunConfig(model="gpt-4o-mini", rounds=2, check_answers=True, check_k=3)
    a, b = estimate_run(seeds, plain), estimate_run(seeds, checked)
    # expected case, fan-out 1: 4 seeds answered + 4 kept children per round; half of them numeric, 3 calls each
    assert b["expected"]["calls"] - a["expected"]["calls"] == 3 * 2 * (1 + 2)
    assert b["expected"]["completion_tokens"] > a["expected"]["completion_tokens"]


def test_check_calls_count_against_the_budget(tmp_path):
    from conftest import openai_backend_for

    from evolab.engine import pipeline
    from evolab.store import Store

    store = Store(tmp_path / "b.db")
    seeds = [Seed(AGREES), Seed(KO_AGREES)]
    try:
        with StubServer(handler=run_handler()) as stub:
            plain = RunConfig(model="gpt-4o-mini", base_url=stub.base_url, rounds=1, max_tokens_respond=64)
            first = pipeline.create_run(store, seeds, plain)
            assert pipeline.run_sync(store, first, backend=openai_backend_for(stub)) == "finished"
            needed = store.run_tokens(first)
            # a budget that covers the run with room for its largest reservation (an evolve call: prompt + 512;
            # control: it finishes) but not the run and its k = 10 samples for each of its 4 answered items
            budget = needed + 1000
            runs = {}
            for check in (False, True):
                config = RunConfig(model="gpt-4o-mini", base_url=stub.base_url, rounds=1, max_tokens_respond=64,
                                   check_answers=check, check_k=10, budget_tokens=budget, random_seed=1)
                run_id = pipeline.create_run(store, seeds, config)
                runs[check] = (run_id, pipeline.run_sync(store, run_id, backend=openai_backend_for(stub)))
        assert runs[False][1] == "finished"
        assert runs[True][1] == "budget"
        assert store.run_tokens(runs[True][0]) <= budget
    finally:
        store.close()


def test_deleting_a_run_deletes_its_checks(store):
    run_id = answered_run(store, {AGREES: "The balance is $1,102.50."})
    store.save_answer_check({"run_id": run_id, "k": 3, "node_id": "n0", "status": CONSISTENT})
    assert store.answer_check_status("n0") == CONSISTENT
    store.delete_run(run_id)
    assert store.answer_checks([run_id]) == [] and store.answer_check_status("n0") is None


def test_a_batch_run_checks_answers_like_an_online_run(tmp_path):
    """Batch mode (evolab/engine/batch.py) replays the engine: the k samples go out in a job and the checks match."""
    from evolab.engine import batch, pipeline
    from evolab.store import Store

    fast = batch.BatchOptions(poll=batch.PollPolicy(first_s=0.01, max_s=0.05))
    # every sample of the disagreeing item differs from the answer, whatever order the requests arrive in
    with StubServer(handler=run_handler()) as stub:
        results = {}
        for mode in ("online", "batch"):
            store = Store(tmp_path / f"{mode}.db")
            config = RunConfig(model="gpt-4o-mini", base_url=stub.base_url, rounds=1, random_seed=3,
                               check_answers=True)
            store.create_run(config, [Seed(s) for s in SEED_ITEMS], run_id="r")
            status = (pipeline.run_sync(store, "r") if mode == "online"
                      else batch.run_batched(store, "r", options=fast))
            assert status == "finished"
            results[mode] = {r["node_id"]: r["status"] for r in store.answer_checks(["r"])}
            if mode == "online":
                online_checks = stub.count("check")
                assert online_checks > 0
            store.close()
        assert stub.count("check") == online_checks  # the batch run's samples all came in batch jobs
    assert results["batch"] == results["online"]
    assert set(results["online"].values()) == {CONSISTENT, INCONSISTENT, NOT_CHECKABLE}
