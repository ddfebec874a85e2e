"""Korean near-duplicates in seed lint (issue 28): e5's cosines crowd into 0.85-0.97 on short Korean finance
instructions that share a frame, so a pair of two Korean texts is judged by e5's Korean word-alignment rule
(cosine - weight x word alignment >= cut; fitted on the tuning sets by bench/neardup_ko.py), every other pair at
the model's own threshold; the held-out sets (written before the rule was fitted or measured on them) judge it."""
from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np

from evolab.embeddings import embed, wordalign
from evolab.embeddings.thresholds import AlignmentRule
from evolab.schema import Seed
from evolab.seeds.files import load_seeds
from evolab.seeds.lint import lint_seeds

FINANCE = Path(embed.__file__).resolve().parents[1] / "data" / "finance.jsonl"
DATA = Path(__file__).resolve().parent / "data" / "embeddings"


class NamedTable:
    """Fixed vectors under a real model's name, so its shipped thresholds apply."""

    texts_embedded = 0

    def __init__(self, name: str, vectors: dict[str, list[float]]):
        self.name, self.vectors = name, vectors

    def encode(self, texts):
        return embed.normalise_rows(np.array([self.vectors.get(t) or word_vector(t, len(next(iter(
            self.vectors.values())))) for t in texts], dtype=np.float32))


def word_vector(word: str, dims: int) -> list[float]:
    """A word's own vector: a shared direction plus a fixed random part, so two different words sit at a cosine
    near 0.86 and the same word at 1 (as e5's vectors of short words crowd together)."""
    noise = np.random.default_rng(zlib.crc32(word.encode())).normal(size=dims)
    base = np.zeros(dims)
    base[-1] = 1.0
    return list(base + 0.4 * noise / np.linalg.norm(noise))


def pair_at(cosine: float, dims: int = 64) -> tuple[list[float], list[float]]:
    a, b = np.zeros(dims), np.zeros(dims)
    a[0], b[0], b[1] = 1.0, cosine, float(np.sqrt(1 - cosine ** 2))
    return list(a), list(b)


def flagged(texts: list[str], cosine: float) -> list[tuple[int, int]]:
    a, b = pair_at(cosine)
    embedder = NamedTable(embed.E5_MODEL_NAME, {texts[0]: a, texts[1]: b})
    report = lint_seeds([Seed(t, skill="x", difficulty=3) for t in texts], embedder=embedder)
    return [(f.row, f.other_row) for f in report.findings if f.kind == "near_duplicate_embedding"]


def test_e5_has_a_korean_rule_and_only_for_two_korean_texts():
    info = embed.threshold_info(embed.E5_MODEL_NAME)
    rule = info.alignment_rule_for("ko", "ko")
    assert rule is not None and rule.weight > 0 and rule.floor < rule.certain < 1 and rule.max_words > 0
    assert info.alignment_rule_for("ko", "en") is None and info.alignment_rule_for("en", "en") is None
    assert info.near_duplicate_for("en", "en") == info.near_duplicate_for("ko", "en") == info.near_duplicate
    # MiniLM (English only) has none: its decisions are unchanged
    minilm = embed.threshold_info(embed.MINILM_MODEL_NAME)
    assert minilm.near_duplicate_for("ko", "ko") == minilm.near_duplicate
    assert minilm.alignment_rule_for("ko", "ko") is None


def test_the_rule_flags_a_high_cosine_for_its_alignment_never_below_its_floor_always_at_its_certain_cosine():
    rule = AlignmentRule(weight=1.2, cut=-0.15, floor=0.85, certain=0.985)
    assert rule.flags(0.92, 0.88)  # 0.92 - 1.056 = -0.136: the cosine is high for words this different
    assert not rule.flags(0.92, 0.95)  # -0.22: the shared words explain the cosine
    assert not rule.flags(0.84, 0.50)  # under the floor, whatever the words
    assert rule.flags(0.99, 1.0)  # one-particle edits share every word: still near-duplicates


def test_alignment_is_bertscore_f1_of_greedy_max_sim():
    rng = np.random.default_rng(0)
    matrices = [embed.normalise_rows(rng.normal(size=(n, 8))) for n in (3, 5, 2, 4)]
    pairs = [(0, 1), (0, 2), (1, 3), (2, 0), (3, 3)]
    got = wordalign.alignments(matrices, pairs)
    for (i, j), value in zip(pairs, got):
        sims = matrices[i] @ matrices[j].T
        recall, precision = sims.max(1).mean(), sims.max(0).mean()
        assert abs(value - 2 * recall * precision / (recall + precision)) < 1e-6
    assert abs(got[-1] - 1.0) < 1e-6  # a text against itself
    assert wordalign.text_words("PER이 낮은 주식(가치주)을 설명하세요.") == ["PER이", "낮은", "주식", "가치주", "을", "설명하세요"]


def test_a_korean_pair_that_shares_its_words_is_kept_a_reworded_one_flagged_english_by_the_global_cut():
    shared = ["주식 배당금의 세금 계산 방법을 설명하세요.", "주식 양도차익의 세금 계산 방법을 설명하세요."]
    reworded = ["주식 배당금의 세금 계산 방법을 설명하세요.", "배당으로 받은 돈에 붙는 과세액은 어떻게 구하나요?"]
    english = ["Explain the difference between stocks and bonds.", "Explain how inflation moves bond prices."]
    assert flagged(shared, 0.93) == []  # five of six words the same: the cosine is no higher than they explain
    assert flagged(reworded, 0.93) == [(2, 1)]  # no word the same, still this close: a paraphrase
    assert flagged(english, 0.93) == [(2, 1)]  # over e5's global threshold; no rule for English
    assert flagged(reworded, 0.84) == []  # under the rule's floor


def test_a_korean_pair_with_a_long_text_keeps_the_cosine_cut():
    """The rule was fitted on one-sentence instructions; an input table's words align with nothing."""
    info = embed.threshold_info(embed.E5_MODEL_NAME)
    rule = info.alignment_rule_for("ko", "ko")
    table = " ".join(f"종목{k} 평가금액{k}" for k in range(rule.max_words))
    long = ["채권 포트폴리오의 금리 위험을 설명하세요. " + table, "채권 듀레이션이 무엇인지 설명하세요."]
    below_cut = info.near_duplicate_for("ko", "ko") - 0.005  # the rule alone would flag this reworded-looking pair
    assert rule.flags(below_cut, 0.80)
    assert flagged(long, below_cut) == []
    assert flagged(long, info.near_duplicate_for("ko", "ko") + 0.005) == [(2, 1)]


def test_korean_pairs_fall_back_to_the_cosine_cut_when_the_words_cannot_be_embedded():
    class TextsOnly(NamedTable):
        def encode(self, texts):
            return embed.normalise_rows(np.array([self.vectors[t] for t in texts], dtype=np.float32))

    info = embed.threshold_info(embed.E5_MODEL_NAME)
    texts = ["주식과 채권의 차이를 초보자에게 설명하세요.", "인플레이션이 채권 가격에 미치는 영향을 설명하세요."]
    for cosine, expected in ((info.near_duplicate_for("ko", "ko") - 0.01, []),
                             (info.near_duplicate_for("ko", "ko") + 0.01, [(2, 1)])):
        a, b = pair_at(cosine)
        report = lint_seeds([Seed(t, skill="x", difficulty=3) for t in texts],
                            embedder=TextsOnly(embed.E5_MODEL_NAME, {texts[0]: a, texts[1]: b}))
        assert [(f.row, f.other_row) for f in report.findings if f.kind == "near_duplicate_embedding"] == expected
        assert any("word alignment not computed" in n for n in report.notes), report.notes


def heldout_decisions(name: str, e5, info) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(paraphrase?, flagged, cosine) per pair of a held-out file, decided as seed lint decides a Korean pair:
    by the rule, or by the cosine cut when a text is longer than the rule's words."""
    rule, cut = info.alignment_rule_for("ko", "ko"), info.near_duplicate_for("ko", "ko")
    rows = [json.loads(line) for line in (DATA / name).read_text(encoding="utf-8").splitlines() if line.strip()]
    texts = sorted({t for r in rows for t in (r["a"], r["b"])})
    at = {t: i for i, t in enumerate(texts)}
    vectors = embed.embed_texts(texts, e5)
    pairs = [(at[r["a"]], at[r["b"]]) for r in rows]
    aligned = wordalign.alignments(wordalign.word_matrices(texts, e5), pairs)
    cosine = np.array([float(vectors[i] @ vectors[j]) for i, j in pairs])
    words = [len(wordalign.text_words(t)) for t in texts]
    flags = np.array([rule.flags(c, a) if rule.applies(words[i], words[j]) else c >= cut
                      for c, a, (i, j) in zip(cosine, aligned, pairs)])
    return np.array([r["label"] == "paraphrase" for r in rows]), flags, cosine


def test_on_the_held_out_sets_the_rule_finds_more_paraphrases_and_flags_fewer_different_questions():
    """Both held-out sets (60 paraphrase pairs, 346 different-question pairs) with the real e5. Shipped on this
    machine: 47/60 paraphrases (78%), 7/346 different questions (2.0%; the first set 26/30 and 3/208); the Korean
    cosine cut before it: 37/60 and 17/346. The issue's goal (90% at most 2%) is not met on recall. Tolerance: a
    drift of 0.001 in both the cosine and the alignment (the 4-bit engine is deterministic on one machine; across
    CPUs a float sum may round otherwise) unflags no paraphrase and flags one more different question."""
    e5 = embed.make_embedder(embed.E5_MODEL_NAME)
    info = embed.threshold_info(e5)
    found = [heldout_decisions(name, e5, info) for name in ("ko_neardup_heldout.jsonl", "ko_neardup_heldout2.jsonl")]
    first_paraphrase, first_flags, _ = found[0]
    assert first_flags[~first_paraphrase].mean() <= 0.02  # the first set: at most 2% of its different questions
    paraphrase, flags, cosine = (np.concatenate(parts) for parts in zip(*found))
    recall, different = flags[paraphrase].sum(), flags[~paraphrase].sum()
    assert recall >= 46, recall
    assert different <= 8, different
    by_cut = cosine >= info.near_duplicate_for("ko", "ko")
    assert recall >= by_cut[paraphrase].sum() + 5
    assert different < by_cut[~paraphrase].sum()


def test_the_shipped_finance_set_lints_without_its_different_tasks_flagged():
    """Rows 13/14 (CTR and STR taught / one customer's transactions analysed) and 20/21 (a Fed rise scenario /
    CIP and swap points) are different tasks a person keeps; the real e5 flagged them at its global threshold."""
    report = lint_seeds(load_seeds(FINANCE))
    pairs = {(f.other_row, f.row) for f in report.findings if f.kind == "near_duplicate_embedding"}
    assert not pairs & {(13, 14), (20, 21)}, report.findings
    assert any("multilingual-e5" in n and "ko: cosine - " in n for n in report.notes), report.notes
