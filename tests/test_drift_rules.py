"""The language_drift and off_topic rules (evolab/engine/drift_rules.py): built-in plugins of the rule registry, on
by default, switchable, stored like every rule; and the off_topic cuts against their calibration."""
from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest

from evolab.embeddings import calibration as cal
from evolab.embeddings import embed
from evolab.engine import drift_rules, eliminator, pipeline
from evolab.engine.runconfig import build_run_config
from evolab.llm.fake import FakeBackend, given_prompt, scripted_reply
from evolab.schema import Node, RunConfig, Seed

KO_SEED = "매달 50만 원씩 연 4% 월복리로 10년 동안 적립하면 만기에 얼마가 되는지 계산하세요."
GAMING = ("It's a game-changer for the gaming industry in China, where mobile titles now earn more than console "
          "games and studios race to build their own engines.")


# -- language_drift --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text", [
    "삼성전자(005930)와 SK하이닉스(000660)의 2023년 영업이익률을 비교하고 반도체 업황이 두 회사에 다르게 작용한 이유를 설명하세요.",
    "S&P 500 ETF(SPY, VOO)와 KOSPI200 ETF의 총보수(TER)와 추적오차를 비교하세요.",
    "IFRS 9 ECL 모형의 Stage 1·2·3 분류 기준을 설명하세요.",
])
def test_korean_with_english_terms_tickers_and_numbers_stays_korean(text):
    assert drift_rules.language_verdict(text, "ko", "instruction").passed


def test_an_english_child_of_a_korean_run_drifts_and_says_which_languages():
    v = drift_rules.language_verdict(GAMING, "ko", "instruction")
    assert (v.rule, v.passed) == ("language_drift", False)
    assert "English" in v.detail and "Korean" in v.detail and "(ko)" in v.detail
    assert not drift_rules.language_verdict("예금 이자를 계산하는 방법을 설명하세요.", "en", "instruction").passed


def test_the_answer_is_read_from_its_prose_not_its_code_and_may_be_the_language_it_was_asked_for():
    code = "```python\ndef total(rows):\n    return sum(r.amount for r in rows)\n```\n합계를 구하는 함수입니다."
    assert drift_rules.language_verdict(code, "ko", "answer").passed
    sql = "월별 합계를 구하는 쿼리입니다.\n\nSELECT month, SUM(amount) AS total\nFROM expenses\nGROUP BY month;"
    assert drift_rules.language_verdict(sql, "ko", "answer").passed
    assert drift_rules.language_verdict("42", "ko", "answer").passed  # too little prose to tell
    english = "The monthly payment is about 1,520,000 won, computed with the annuity formula."
    assert not drift_rules.language_verdict(english, "ko", "answer", instruction=KO_SEED).passed
    assert drift_rules.language_verdict(english, "ko", "answer", instruction="다음 문장을 영어로 번역하세요.").passed
    # the two stages are told apart in the store by their judge (its key is node, rule, judge)
    assert drift_rules.language_verdict(english, "ko", "answer").judge != \
        drift_rules.language_verdict(english, "ko", "instruction").judge


# -- off_topic -------------------------------------------------------------------------------------------------
def off_topic(parent: str, child: str, language: str, operation: str = "constraints", input: str = ""):
    ctx = eliminator.StepContext(
        parent=Node(id="p", run_id="r", parent_id=None, root_id="p", round=0, operation="seed", instruction=parent,
                    input=input, language=language),
        node=Node(id="c", run_id="r", parent_id="p", root_id="p", round=1, operation=operation, instruction=child,
                  input=input, language=language),
        config=RunConfig())
    return asyncio.run(drift_rules.OFF_TOPIC.check(ctx))


def test_off_topic_catches_a_child_on_another_subject_and_keeps_a_rewrite(monkeypatch):
    monkeypatch.delenv("EVOLAB_EMBED_MODEL", raising=False)
    monkeypatch.delenv("EVOLAB_EMBED_BASE_URL", raising=False)
    rewrite = KO_SEED.replace("계산하세요.", "계산하고, 이자소득세 15.4%를 뺀 세후 금액도 구하세요.")
    assert off_topic(KO_SEED, rewrite, "ko").passed
    v = off_topic(KO_SEED, "체스의 기본 규칙을 초보자에게 설명하세요.", "ko")
    assert not v.passed and "subject" in v.detail and embed.E5_MODEL_NAME in v.detail
    # the parent's input, kept by the child, does not make an unrelated question look on topic
    table = "| 월 | 납입액 |\n|---|---|\n| 1 | 500,000 |\n| 2 | 500,000 |"
    assert not off_topic(KO_SEED, "체스의 기본 규칙을 초보자에게 설명하세요.", "ko", input=table).passed
    # in-breadth children are held to their parent's domain
    v = off_topic("Explain how compound interest works.", "Write a haiku about autumn leaves.", "en", "breadth")
    assert not v.passed and "domain" in v.detail and "in-breadth" in v.detail


def test_off_topic_leaves_a_child_in_another_language_to_language_drift(monkeypatch):
    monkeypatch.delenv("EVOLAB_EMBED_MODEL", raising=False)
    monkeypatch.delenv("EVOLAB_EMBED_BASE_URL", raising=False)
    v = off_topic(KO_SEED, GAMING, "ko")
    assert v.passed and "language_drift" in v.detail


def test_off_topic_passes_and_says_so_for_a_model_nobody_calibrated(monkeypatch):
    class Mine:
        name, texts_embedded = "my-own-model", 0

        def encode(self, texts):
            return np.ones((len(texts), 4), dtype=np.float32) / 2

    monkeypatch.setattr(drift_rules, "run_embedder", lambda: Mine())
    v = off_topic("Explain bonds.", "Write a poem about the sea.", "en")
    assert v.passed and "no off-topic cut calibrated for my-own-model" in v.detail


# -- registered like the built-ins: on by default, switchable, stored ---------------------------------------------
def test_both_rules_are_in_the_cascade_cheap_first_with_their_languages():
    rows = eliminator.describe_cascade()
    ids = [r["id"] for r in rows]
    assert ids.count("language_drift") == 2 and ids.count("off_topic") == 1
    assert ids.index("off_topic") < ids.index("refusal")  # judged before the child is answered
    assert {r["languages"] for r in rows if r["id"] in ("language_drift", "off_topic")} == {"en,ko"}
    assert not any(r["uses_llm"] for r in rows if r["id"] in ("language_drift", "off_topic"))


def test_on_by_default_and_switched_off_in_the_config():
    cfg = RunConfig()
    assert all(r.enabled(cfg) for r in eliminator.CASCADE if r.id in ("language_drift", "off_topic"))
    off = build_run_config(rule_off=["language_drift", "off_topic"])
    assert (off.rules.language_drift, off.rules.off_topic) == (False, False)
    assert not any(r.enabled(off) for r in eliminator.CASCADE if r.id in ("language_drift", "off_topic"))
    assert RunConfig.from_dict(json.loads(json.dumps(off.to_dict()))).rules.off_topic is False


def english_child_handler(messages, purpose):
    """A model that rewrites every Korean prompt in English (an English-centric model)."""
    if purpose == "evolve":
        return "#Rewritten Prompt#:\n" + GAMING
    return scripted_reply(messages, purpose)


def test_a_korean_run_keeps_korean_children_and_drops_an_english_one(store):
    seeds = [Seed(KO_SEED), Seed("주식과 채권의 차이를 위험과 수익 측면에서 설명하세요.")]
    run_id = pipeline.create_run(store, seeds, RunConfig(model="fake", base_url="http://fake", rounds=1))
    assert pipeline.run_sync(store, run_id, backend=FakeBackend()) == "finished"
    kids = [n for n in store.nodes(run_id) if n.round == 1]
    assert [n.status for n in kids] == ["kept", "kept"] and {n.language for n in kids} == {"ko"}

    # another random seed: the first run's replies are cached by content and would be reused
    run_id = pipeline.create_run(store, seeds, RunConfig(model="fake", base_url="http://fake", rounds=1,
                                                         random_seed=1))
    assert pipeline.run_sync(store, run_id, backend=FakeBackend(handler=english_child_handler)) == "finished"
    kids = [n for n in store.nodes(run_id) if n.round == 1]
    assert {(n.status, n.rule) for n in kids} == {("eliminated", "language_drift")}
    rows = [s for s in store.scores(node_id=kids[0].id) if s.metric == "rule:language_drift"]
    assert [(s.value, s.judge) for s in rows] == [(0.0, "heuristic")] and "English" in rows[0].detail


def test_the_scripted_model_answers_a_korean_prompt_in_korean():
    ko = scripted_reply([{"role": "user", "content": f"#Given Prompt#:\n{KO_SEED}\n#Rewritten Prompt#:"}], "evolve")
    assert drift_rules.language_verdict(ko.split(":\n", 1)[1], "ko", "instruction").passed
    answer = scripted_reply([{"role": "user", "content": KO_SEED}], "respond")
    assert drift_rules.language_verdict(answer, "ko", "answer").passed
    assert given_prompt([{"role": "user", "content": "Explain bonds."}]) == "Explain bonds."


# -- the calibration ---------------------------------------------------------------------------------------------
def test_topic_pairs_errors_name_the_line(tmp_path):
    bad = tmp_path / "pairs.jsonl"
    bad.write_text('{"parent": "a", "child": "b", "label": "rewrite", "kind": "in-depth", "language": "en"}\n'
                   '{"parent": "a", "child": "b", "label": "similar", "kind": "in-depth", "language": "en"}\n')
    with pytest.raises(ValueError, match=r"pairs.jsonl:2: label"):
        cal.load_topic_pairs(bad)


def test_the_cut_sits_between_the_lowest_rewrite_and_the_highest_unrelated_pair_under_it():
    assert cal.off_topic_cut([0.90, 0.86, 0.95], [0.70, 0.80, 0.88]) == 0.83
    assert cal.off_topic_cut([0.90], [0.95]) == 0.9  # nothing under the lowest rewrite: the rewrite itself


def test_the_shipped_cuts_agree_with_the_recomputed_ones_and_flag_no_tuning_rewrite():
    e5 = embed.multilingual_embedder()
    entry = cal.calibrate_off_topic(e5)
    shipped = embed.thresholds.off_topic_thresholds(embed.E5_MODEL_NAME)
    for kind in ("in_depth", "in_breadth"):
        for lang in ("en", "ko"):
            assert abs(entry[kind][lang] - shipped[kind][lang]) <= 0.002, (kind, lang)  # float kernels differ
    assert all(r["false_positives"] == 0 for r in entry["tuning"])


def test_off_topic_uses_the_embedder_the_user_names_and_passes_when_it_cannot_load(monkeypatch):
    monkeypatch.setenv("EVOLAB_EMBED_MODEL", "no-such-model-anywhere")
    v = off_topic("Explain bonds.", "Write a poem about the sea.", "en")
    assert v.passed and "no embedder to compare with" in v.detail and "no-such-model-anywhere" in v.detail
