"""Growing a seed set on the stub server (evolab.seeds.craft.grow): Self-Instruct's 6+2 examples, the ROUGE-L and
embedding filters, Korean in -> Korean out, provenance, resume without a repeated paid call, the CLI."""
from __future__ import annotations

import hashlib
import json
import re
import threading

import numpy as np
import pytest
from conftest import STUB_KEY_ENV

from evolab.cli.main import main
from evolab.llm.client import LLMClient
from evolab.llm.openai_backend import OpenAICompatibleBackend
from evolab.schema import Seed
from evolab.seeds import craft as seedcraft
from evolab.seeds.files import load_seeds
from evolab.store import Store
from evolab.testing.stub_server import StubServer
from evolab.text.replies import read_instruction_list

EN_SEEDS = [
    "Explain the difference between a Roth IRA and a traditional IRA.",
    "Write a short email asking a bank to waive an overdraft fee.",
    "Calculate the monthly payment on a 30-year mortgage of $300,000 at 6% interest.",
    "List three risks of investing all savings in a single company's stock.",
    "Summarize what a credit score measures and how to improve it.",
    "Compare index funds and actively managed mutual funds for a beginner.",
    "Draft a budget for a college student earning $1,200 a month.",
    "Describe how inflation affects the value of cash savings.",
]
KO_SEEDS = [
    "예금 금리와 대출 금리가 왜 다른지 설명하세요.",
    "사회초년생을 위한 한 달 예산표를 만들어 주세요.",
    "주식과 채권의 위험을 비교해 설명하세요.",
    "신용점수를 올리는 방법 세 가지를 알려 주세요.",
    "연말정산에서 소득공제와 세액공제의 차이를 설명하세요.",
    "적금과 예금 중 무엇이 유리한지 상황별로 비교하세요.",
]
# Distinct new tasks the stub hands out (each is a different topic, so they pass ROUGE-L against one another).
EN_BANK = [
    "Explain how a health savings account lowers taxable income.",
    "Estimate retirement savings needed to replace 70% of a $60,000 salary.",
    "Write a letter disputing an incorrect charge on a credit card statement.",
    "Outline the steps for rolling over a 401(k) after changing jobs.",
    "Assess whether paying off student loans early beats investing the money.",
    "Describe what happens to bond prices when interest rates rise.",
    "Give a checklist for reviewing a home insurance policy before renewal.",
    "Compute the break-even point for a cafe with fixed costs of $8,000 monthly.",
    "Contrast term life insurance with whole life insurance for a young family.",
    "Recommend an emergency fund size for a freelancer with irregular income.",
    "Interpret a company's price-to-earnings ratio of 35 for a novice investor.",
    "Plan a debt snowball for three credit cards with different balances.",
    "Clarify how capital gains on a sold house are taxed.",
    "Propose ways a small charity could diversify its donation income.",
    "Evaluate leasing versus buying a car for someone driving 20,000 miles yearly.",
    "Translate the jargon in a brokerage fee schedule into plain language.",
    "Detail the warning signs of an investment scam targeting retirees.",
    "Forecast cash flow for a landlord with two rental units and one vacancy.",
    "Rank four savings goals for a couple expecting their first child.",
    "Critique a plan to fund a wedding entirely with a personal loan.",
]
KO_BANK = [
    "청년도약계좌의 가입 조건과 혜택을 정리해 주세요.",
    "전세 보증금을 지키기 위해 계약 전에 확인할 서류를 알려 주세요.",
    "달러 환율이 오를 때 해외 주식 투자자가 겪는 영향을 설명하세요.",
    "퇴직연금 DB형과 DC형 중 이직이 잦은 사람에게 맞는 것을 고르세요.",
    "자동차 보험료를 낮출 수 있는 특약을 비교하세요.",
    "소상공인이 정책자금 대출을 신청하는 절차를 단계별로 쓰세요.",
    "배당주 투자에서 배당락일이 무엇인지 예를 들어 설명하세요.",
    "신용카드 리볼빙 서비스의 이자 부담을 계산하는 방법을 보여 주세요.",
    "부모님 노후 자금을 위한 연금 상품 선택 기준을 제시하세요.",
    "중도상환수수료가 있는 대출을 갈아탈지 판단하는 기준을 세우세요.",
]


def _examples(prompt: str) -> list[str]:
    """The numbered in-context examples of a grow prompt."""
    block = prompt.split("\n\n")[1]
    return [re.sub(r"^\d+\.\s*", "", line) for line in block.split("\n") if re.match(r"^\d+\.", line)]


class RealisticGrowModel:
    """What a model answers to grow prompts: a numbered list with a preamble and a closing remark, holding three new
    tasks, a near-copy of a hand seed (one word changed), a duplicate within the reply, an item in the wrong
    language; the second of every five replies a refusal. Korean prompts get Korean lists.

    The replies follow the order of the grow requests, never the prompt's text: the prompt's examples follow the
    job id, which names the stub's port, so a reply chosen from the prompt would make each run different. The
    n-th reply that is no refusal hands out the bank's tasks 3n, 3n+1, 3n+2, so every reply brings new ones.
    `restart()` plays the same replies again (for a second run of the same job)."""

    def __init__(self):
        self._lock = threading.Lock()
        self.replies = 0

    def restart(self) -> None:
        with self._lock:
            self.replies = 0

    def __call__(self, messages, purpose):
        if purpose == "probe":
            return '{"answer": 5}'
        with self._lock:
            index, self.replies = self.replies, self.replies + 1
        if index % 5 == 1:
            return "I'm sorry, but I can't help with generating more of these."
        fresh_index = index - (index + 3) // 5  # replies before this one that were no refusal
        korean = "지시문" in messages[-1]["content"]
        seeds, bank = (KO_SEEDS, KO_BANK) if korean else (EN_SEEDS, EN_BANK)
        fresh = [bank[(3 * fresh_index + i) % len(bank)] for i in range(3)]
        near_copy = seeds[index % len(seeds)].replace("Explain", "Clarify").replace("설명하세요", "설명해 주세요")
        near_copy = near_copy if near_copy not in seeds else near_copy + (" 간단히" if korean else " briefly")
        if korean:
            return ("다음은 새 지시문입니다:\n\n" + "\n".join(f"{i}. {t}" for i, t in enumerate(
                [fresh[0], near_copy, fresh[1], fresh[1], "Explain how a credit union differs from a bank.", fresh[2]],
                1)) + "\n\n도움이 되길 바랍니다!")
        items = [f"**New task**: {fresh[0]}", near_copy, fresh[1], fresh[1] + " ", "주식 투자 위험을 설명하세요.", fresh[2]]
        return "Here are new instructions:\n\n" + "\n".join(f"{i}. {t}" for i, t in enumerate(items, 1)) + \
            "\n\nLet me know if you need more!"


@pytest.fixture()
def stub():
    with StubServer(handler=RealisticGrowModel()) as server:
        yield server


def client_for(stub, store) -> LLMClient:
    return LLMClient(OpenAICompatibleBackend(model="gpt-4o-mini", base_url=stub.base_url, api_key_env=STUB_KEY_ENV,
                                             timeout_s=60, max_retries=2), store, concurrency=2)  # a loaded CI machine is slow, not broken


def run_grow(stub, store, spec, **kw):
    import asyncio

    async def go():
        client = client_for(stub, store)
        try:
            return await seedcraft.grow(store, client, spec, embedder=kw.pop("embedder", None), **kw)
        finally:
            await client.aclose()

    return asyncio.run(go())


def en_seeds():
    return [Seed(t, language="en") for t in EN_SEEDS]


def ko_seeds():
    return [Seed(t, language="ko") for t in KO_SEEDS]


def test_prompt_shows_six_hand_and_two_generated_examples():
    import random

    hand, generated = en_seeds(), [Seed(t) for t in EN_BANK[:5]]
    chosen = seedcraft.pick_examples(hand, generated, random.Random(0))
    assert len(chosen) == 8
    assert sum(s in generated for s in chosen) == 2 and sum(s in hand for s in chosen) == 6
    # Before anything is generated the hand seeds fill all eight places; a small set shows what it has.
    assert len(seedcraft.pick_examples(hand, [], random.Random(0))) == 8
    assert len(seedcraft.pick_examples(hand[:3], [Seed("x y z")], random.Random(0))) == 4
    prompt = seedcraft.build_grow_prompt(chosen, seedcraft.GrowSpec(hand, 5), "en")
    assert len(_examples(prompt)) == 8 and "numbered list" in prompt and "English" in prompt


def test_grow_keeps_only_novel_tasks_in_the_sets_language(stub, tmp_path):
    store = Store(tmp_path / "g.db")
    spec = seedcraft.GrowSpec(en_seeds(), n=12, per_call=6)
    result = run_grow(stub, store, spec)
    # Replies 1, 3, 4 and 5 bring three new tasks each, reply 2 is a refusal: every new task was kept.
    assert (result.status, result.calls, result.kept) == ("finished", 5, 12)
    rows = store.grow_candidates(result.job_id)
    kept = [r for r in rows if r["status"] == "kept"]
    texts = [r["instruction"] for r in kept]
    assert len(texts) == len(set(texts))  # the duplicate within a reply and across replies went
    assert set(texts) <= set(EN_BANK)  # only the bank's fresh tasks survive; the label "New task:" is stripped
    reasons = {r["reason"] for r in rows if r["status"] == "rejected"}
    assert {"rouge_l", "wrong_language"} <= reasons
    near = [r for r in rows if r["reason"] == "rouge_l"]
    assert any(r["instruction"] not in EN_SEEDS + EN_BANK for r in near)  # the near-copies of examples
    # In each of the four lists: the near-copy of a hand seed and the repeat of a task within the list.
    assert len(near) == 8 and all("ROUGE-L" in r["detail"] for r in near)
    assert len(texts) == 12 and all(novelty_below(t, EN_SEEDS + [u for u in texts if u != t]) for t in texts)
    # A refusal is recorded as an unreadable call with its text, never turned into seeds.
    unreadable = [r for r in rows if r["reason"] == "unreadable"]
    assert len(unreadable) == 1 and unreadable[0]["instruction"] == "" and "sorry" in unreadable[0]["detail"]
    # Provenance of every kept seed: generated, by which examples, model, endpoint host, time.
    hand_ids = {seedcraft.seed_id(s) for s in spec.seeds}
    for r in kept:
        src = r["seed"]["source"]
        assert src["kind"] == "generated" and src["model"] == "gpt-4o-mini"
        assert src["endpoint"] == f"127.0.0.1:{stub.port}" and "created_at" in src
        assert len(src["examples"]) == 8 and len(set(src["examples"]) & hand_ids) >= 6


def novelty_below(text, others):
    from evolab.embeddings.novelty import max_rouge_l

    return max_rouge_l(text, others) < 0.7


def test_korean_seeds_grow_korean_seeds(stub, tmp_path):
    store = Store(tmp_path / "k.db")
    result = run_grow(stub, store, seedcraft.GrowSpec(ko_seeds(), n=5, per_call=6))
    assert (result.status, result.calls, result.kept) == ("finished", 3, 6)  # a list, a refusal, a list
    prompts = [r["body"]["messages"][-1]["content"] for r in stub.chat_requests("grow")]
    assert len(prompts) == 3 and all("한국어로 쓰세요" in p for p in prompts)
    assert len(result.new_seeds) == 5
    assert all(s.language == "ko" and s.instruction in KO_BANK for s in result.new_seeds)
    wrong = [r for r in store.grow_candidates(result.job_id) if r["reason"] == "wrong_language"]
    assert len(wrong) == 2 and all(r["instruction"].startswith("Explain how a credit union") for r in wrong)
    assert wrong[0]["detail"] == "en, not ko"


def test_a_refusal_is_an_unreadable_call_with_its_text(tmp_path):
    with StubServer(handler=lambda m, p: '{"answer": 5}' if p == "probe" else
                    "죄송하지만 그런 요청은 도와드릴 수 없습니다.") as stub:
        store = Store(tmp_path / "r.db")
        result = run_grow(stub, store, seedcraft.GrowSpec(ko_seeds(), n=3), max_calls=2)
    assert result.status == "max_calls" and result.kept == 0 and "Run again" in result.message
    rows = store.grow_candidates(result.job_id)
    assert [r["reason"] for r in rows] == ["unreadable", "unreadable"]
    assert "도와드릴 수 없습니다" in rows[0]["detail"]
    assert store.grow_job(result.job_id)["status"] == "max_calls"


class SynonymEmbedder:
    """A bag-of-concepts embedder for the filter's logic: paraphrases built from synonyms embed alike."""

    name = "synonyms-test"
    texts_embedded = 0
    SYNONYMS = {"describe": "explain", "clarify": "explain", "mechanics": "works", "compounding": "compound",
                "operates": "works", "grows": "works"}

    def encode(self, texts):
        rows = []
        for t in texts:
            v = np.zeros(64, dtype=np.float32)
            for w in re.findall(r"[a-z]+", t.lower()):
                w = self.SYNONYMS.get(w, w)
                if len(w) > 3:
                    v[int(hashlib.md5(w.encode()).hexdigest(), 16) % 64] += 1
            rows.append(v / (np.linalg.norm(v) or 1))
        return np.stack(rows)


def test_embedding_near_duplicates_are_dropped_even_with_low_rouge(tmp_path):
    seeds = [Seed("Explain how compound interest works."), Seed("Write a haiku about saving money."),
             Seed("List the parts of a balance sheet.")]
    paraphrase = "Describe the mechanics of compounding interest."

    def reply(messages, purpose):
        return f"1. {paraphrase}\n2. Plan a weekly grocery budget for a family of four."

    from evolab.embeddings.novelty import rouge_l

    assert rouge_l(paraphrase, seeds[0].instruction) < 0.7  # ROUGE-L alone would keep it
    with StubServer(handler=reply) as stub:
        store = Store(tmp_path / "e.db")
        result = run_grow(stub, store, seedcraft.GrowSpec(seeds, n=1, per_call=2), embedder=SynonymEmbedder())
    rows = store.grow_candidates(result.job_id)
    assert [(r["status"], r["reason"]) for r in rows] == [("rejected", "near_duplicate"), ("kept", None)]
    assert "cosine" in rows[0]["detail"] and "compound interest" in rows[0]["detail"]
    # The threshold is the embedder's own (embed.near_duplicate_threshold), and vectors went to the store's cache.
    assert store.get_embeddings("synonyms-test", [__import__("evolab.store").store.text_hash(paraphrase)])


def test_fewer_than_three_seeds_is_refused_with_a_message(tmp_path):
    with pytest.raises(seedcraft.SeedcraftError, match="at least 3 seeds"):
        seedcraft.check_spec(seedcraft.GrowSpec(en_seeds()[:2], n=5))


def test_a_stopped_job_resumes_without_repeating_a_paid_call(stub, tmp_path):
    store = Store(tmp_path / "resume.db")
    spec = seedcraft.GrowSpec(en_seeds(), n=10, per_call=6)
    first = run_grow(stub, store, spec, max_calls=2)  # the "kill": stopped after a budget of two calls
    assert first.status == "max_calls" and first.calls == 2
    paid_before = [r["body"]["messages"][-1]["content"] for r in stub.chat_requests("grow")]
    assert len(paid_before) == 2
    second = run_grow(stub, store, spec)
    assert second.job_id == first.job_id and (second.status, second.calls, second.kept) == ("finished", 3, 12)
    prompts = [r["body"]["messages"][-1]["content"] for r in stub.chat_requests("grow")]
    assert len(prompts) == len(set(prompts))  # no prompt was sent twice
    assert store.grow_progress(first.job_id)["calls"] == len(prompts)
    # The same job from scratch in another store makes exactly the same calls: the resume rebuilt the same choices.
    stub.reset()
    stub.handler.restart()  # the model answers as it did
    once = run_grow(stub, Store(tmp_path / "once.db"), spec)
    assert [r["body"]["messages"][-1]["content"] for r in stub.chat_requests("grow")] == prompts
    assert len(once.new_seeds) == 10
    assert [s.instruction for s in once.new_seeds] == [s.instruction for s in second.new_seeds]


def test_a_call_paid_but_not_recorded_comes_from_the_cache(stub, tmp_path):
    """Killed after the reply came back but before its candidates were written: the re-run gets it from the cache."""
    store = Store(tmp_path / "kill.db")
    spec = seedcraft.GrowSpec(en_seeds(), n=4, per_call=6)
    done = run_grow(stub, store, spec, max_calls=2)
    last = store.grow_progress(done.job_id)["last_call"]
    with store.transaction() as c:
        c.execute("DELETE FROM grow_candidates WHERE job_id=? AND call_index=?", (done.job_id, last))
    paid = stub.count("grow")
    again = run_grow(stub, store, spec, max_calls=1)
    assert stub.count("grow") == paid  # the redone call was a cache hit
    assert store.grow_progress(done.job_id)["calls"] == last + 1 and again.calls == 1


def test_grow_here_targets_a_cell_and_marks_the_tags_as_proposed(stub, tmp_path):
    store = Store(tmp_path / "t.db")
    spec = seedcraft.GrowSpec(en_seeds(), n=2, per_call=6, target_skill="insurance", target_difficulty="7-8")
    result = run_grow(stub, store, spec)
    prompt = stub.chat_requests("grow")[0]["body"]["messages"][-1]["content"]
    assert 'skill "insurance"' in prompt and "difficulty 7-8" in prompt
    assert len(result.new_seeds) == 2
    assert all(s.skill == "insurance" and s.difficulty == 7.5 for s in result.new_seeds)
    assert all(s.source["proposed"] == ["skill", "difficulty"] for s in result.new_seeds)
    plain = seedcraft.GrowSpec(en_seeds(), n=2, per_call=6)
    assert plain.job_id("m", "e") != spec.job_id("m", "e")  # another cell is another job


def test_list_reader_on_realistic_replies():
    assert read_instruction_list("I'm sorry, I can't do that.") == []
    assert read_instruction_list("Sure! Here is one: explain APR.") == []  # prose is not a list
    reply = ("Here are 3 tasks:\n\n1. **Budgeting**: Plan a monthly budget.\n2) Compare two loans.\n"
             "   Input: Loan A 5%, Loan B 6%\n(3) Explain escrow.\n\nHope this helps!")
    assert read_instruction_list(reply) == [("Plan a monthly budget.", ""), ("Compare two loans.", "Loan A 5%, Loan B 6%"),
                                            ("Explain escrow.", "")]
    ko = "## 새 지시문\n\n### 과제 1\n예산표를 만들어 주세요.\n\n### 과제 2\n환율을 설명하세요.\n입력: 1달러=1300원"
    assert read_instruction_list(ko) == [("예산표를 만들어 주세요.", ""), ("환율을 설명하세요.", "1달러=1300원")]
    assert read_instruction_list("<think>list 1. no</think>\n- 첫째 과제를 쓰세요\n- 둘째 과제를 쓰세요") == [
        ("첫째 과제를 쓰세요", ""), ("둘째 과제를 쓰세요", "")]
    assert read_instruction_list('```json\n["Explain APR.", {"instruction": "Sum it", "input": "1, 2"}]\n```') == [
        ("Explain APR.", ""), ("Sum it", "1, 2")]


def test_cli_grow_writes_the_grown_set_and_resumes(stub, tmp_path, capsys, monkeypatch):
    seeds_file = tmp_path / "seeds.jsonl"
    seeds_file.write_text("\n".join(json.dumps({"instruction": t, "skill": "finance"}) for t in EN_SEEDS) + "\n")
    out, db = tmp_path / "grown.jsonl", str(tmp_path / "cli.db")
    monkeypatch.setenv("EVOLAB_EMBED_BASE_URL", stub.base_url)  # the stub's /v1/embeddings
    monkeypatch.setenv("EVOLAB_EMBED_MODEL", "stub-embed")
    monkeypatch.setenv("EVOLAB_EMBED_KEY_ENV", STUB_KEY_ENV)
    args = ["seeds", "grow", str(seeds_file), "--n", "6", "--out", str(out), "--db", db, "--base-url", stub.base_url,
            "--model", "gpt-4o-mini", "--api-key-env", STUB_KEY_ENV]
    assert main(args + ["--max-calls", "1"]) == 0
    first = capsys.readouterr().out
    assert "call 1:" in first and "run the same command again" in first
    calls = stub.count("grow")
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "resuming" in text and f"wrote {len(EN_SEEDS) + 6} seeds" in text
    grown = load_seeds(out)
    assert len(grown) == len(EN_SEEDS) + 6 and [s.instruction for s in grown[:8]] == EN_SEEDS
    assert all(s.source and s.source["kind"] == "generated" for s in grown[8:])
    assert not any("sk-" in line for line in out.read_text().splitlines())  # never a key
    assert stub.count("grow") > calls
    # Too few seeds: exit 2 with the reason.
    small = tmp_path / "small.txt"
    small.write_text("one task here\nanother task here\n")
    assert main(["seeds", "grow", str(small), "--n", "3", "--out", str(out), "--db", db]) == 2
    assert "at least 3 seeds" in capsys.readouterr().err


def test_echoes_of_the_prompt_and_example_answers_are_not_seeds(tmp_path):
    """What the embedded 135M model really answered (bench run in the README): its own rules echoed back as tasks,
    and an "Output:" line after a task."""
    def echo(messages, purpose):
        return ("1. Each must be a different, self-contained task that a user could give an AI assistant.\n"
                "2. Classify each customer review as positive, negative or mixed.\n"
                "   Input: The screen is gorgeous but the battery barely lasts an afternoon.\n"
                "   Output: mixed\n"
                "3. 각 지시문은 사용자가 AI 어시스턴트에게 줄 수 있는, 서로 다르고 그 자체로 완결된 과제여야 합니다.")

    with StubServer(handler=echo) as stub:
        store = Store(tmp_path / "leak.db")
        result = run_grow(stub, store, seedcraft.GrowSpec(en_seeds(), n=1, per_call=3))
    rows = store.grow_candidates(result.job_id)
    assert [(r["status"], r["reason"]) for r in rows] == [("rejected", "prompt_leak"), ("kept", None),
                                                          ("rejected", "wrong_language")]
    assert rows[1]["input"] == "The screen is gorgeous but the battery barely lasts an afternoon."
    with StubServer(handler=lambda m, p: echo(m, p).split("\n", 4)[-1].replace("3. ", "1. ")) as stub:
        store = Store(tmp_path / "leak_ko.db")
        result = run_grow(stub, store, seedcraft.GrowSpec(ko_seeds(), n=1, per_call=1), max_calls=1)
    assert [r["reason"] for r in store.grow_candidates(result.job_id)] == ["prompt_leak"]


def test_provenance_round_trips_through_seed_files_and_tables(tmp_path):
    from evolab.seeds.files import seeds_from_records, seeds_to_records

    grown = Seed("Price a 5-year bond.", skill="investing", difficulty=7.5, language="en",
                 source={"kind": "generated", "examples": ["abc123"], "model": "m", "endpoint": "api.example.com",
                         "created_at": "2026-11-30T00:00:00Z", "proposed": ["skill", "difficulty"]})
    hand = Seed("Explain APR.", language="en")
    path = tmp_path / "set.jsonl"
    seedcraft.write_seed_file([hand, grown], str(path))
    assert load_seeds(path) == [hand, grown]
    assert '"source"' not in path.read_text().splitlines()[0]  # a hand seed's file line stays as it was
    assert seeds_from_records(seeds_to_records([hand, grown])) == [hand, grown]  # through the table editor
    csv = tmp_path / "set.csv"
    csv.write_text('instruction,source\n"Explain APR.",wikipedia\n"Price it.","{""kind"": ""generated""}"\n')
    a, b = load_seeds(csv)
    assert a.source == {"note": "wikipedia"} and b.source == {"kind": "generated"}  # another file's column is kept
    old_style = Store(tmp_path / "s.db")
    old_style.save_seed_set("old", [hand])
    assert old_style.load_seed_set("old") == [hand]


def test_long_example_inputs_are_clipped_in_the_prompt():
    table = "| 날짜 | 금액 |\n" + "| 2026-01-01 | 1,000원 |\n" * 200
    seeds = [Seed("아래 거래 내역의 합계를 구하세요.", input=table, language="ko")] + ko_seeds()[:2]
    spec = seedcraft.GrowSpec(seeds, n=3)
    prompt = seedcraft.build_grow_prompt(seeds, spec, "ko")
    shown = next(line for line in prompt.split("\n") if line.strip().startswith("입력:"))
    assert len(shown) < 330 and shown.endswith("…") and len(prompt) < 1500
    spec.example_input_chars = 0  # a 2,048-token model (the embedded one): instructions only
    assert "입력:" not in seedcraft.build_grow_prompt(seeds, spec, "ko").split("\n\n")[1]
    assert spec.job_id("m", "e") != seedcraft.GrowSpec(seeds, n=3).job_id("m", "e")


def test_fewer_examples_keep_the_three_to_one_share_and_long_tasks_are_dropped(tmp_path):
    import random

    hand, generated = en_seeds(), [Seed(t) for t in EN_BANK[:5]]
    four = seedcraft.pick_examples(hand, generated, random.Random(1), total=4)
    assert len(four) == 4 and sum(s in generated for s in four) == 1
    long_task = "Explain " + " ".join(f"point{i}" for i in range(160)) + "."

    def reply(messages, purpose):
        return f"1. {long_task}\n2. Estimate the yearly cost of owning a small electric car."

    with StubServer(handler=reply) as stub:
        store = Store(tmp_path / "long.db")
        result = run_grow(stub, store, seedcraft.GrowSpec(hand, n=1, per_call=2, examples=4))
        prompt = stub.chat_requests("grow")[0]["body"]["messages"][-1]["content"]
    assert "Here are 4 instructions" in prompt and len(_examples(prompt)) == 4
    assert [r["reason"] for r in store.grow_candidates(result.job_id)] == ["too_long", None]
