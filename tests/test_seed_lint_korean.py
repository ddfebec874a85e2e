"""Korean near-duplicates in seed lint (issue 28): e5's cosines crowd into 0.85-0.97 on short Korean finance
instructions that share a frame, so a pair of two Korean texts is judged at e5's Korean threshold (tuned on
tests/data/embeddings/ko_neardup_tuning.jsonl by bench/neardup_ko.py), every other pair at the model's own."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from evolab.embeddings import embed
from evolab.schema import Seed
from evolab.seeds.files import load_seeds
from evolab.seeds.lint import lint_seeds

FINANCE = Path(embed.__file__).resolve().parents[1] / "data" / "finance.jsonl"


class NamedTable:
    """Fixed vectors under a real model's name, so its shipped thresholds apply."""

    texts_embedded = 0

    def __init__(self, name: str, vectors: dict[str, list[float]]):
        self.name, self.vectors = name, vectors

    def encode(self, texts):
        return embed.normalise_rows(np.array([self.vectors[t] for t in texts], dtype=np.float32))


def pair_at(cosine: float) -> tuple[list[float], list[float]]:
    return [1.0, 0.0], [cosine, float(np.sqrt(1 - cosine ** 2))]


def flagged(texts: list[str], cosine: float) -> list[tuple[int, int]]:
    a, b = pair_at(cosine)
    embedder = NamedTable(embed.E5_MODEL_NAME, {texts[0]: a, texts[1]: b})
    report = lint_seeds([Seed(t, skill="x", difficulty=3) for t in texts], embedder=embedder)
    return [(f.row, f.other_row) for f in report.findings if f.kind == "near_duplicate_embedding"]


def test_e5_has_a_korean_threshold_above_its_global_one_and_only_for_two_korean_texts():
    info = embed.threshold_info(embed.E5_MODEL_NAME)
    korean = info.near_duplicate_for("ko", "ko")
    assert info.near_duplicate < korean < 0.99
    assert info.near_duplicate_for("en", "en") == info.near_duplicate_for("ko", "en") == info.near_duplicate
    # MiniLM (English only) has none: its decisions are unchanged
    minilm = embed.threshold_info(embed.MINILM_MODEL_NAME)
    assert minilm.near_duplicate_for("ko", "ko") == minilm.near_duplicate


def test_a_korean_pair_between_the_two_thresholds_is_kept_an_english_one_is_flagged():
    info = embed.threshold_info(embed.E5_MODEL_NAME)
    between = (info.near_duplicate + info.near_duplicate_for("ko", "ko")) / 2
    korean = ["주식과 채권의 차이를 초보자에게 설명하세요.", "인플레이션이 채권 가격에 미치는 영향을 설명하세요."]
    english = ["Explain the difference between stocks and bonds.", "Explain how inflation moves bond prices."]
    assert flagged(korean, between) == []
    assert flagged(english, between) == [(2, 1)]
    assert flagged(korean, min(0.999, info.near_duplicate_for("ko", "ko") + 0.02)) == [(2, 1)]


def test_the_shipped_finance_set_lints_without_its_different_tasks_flagged():
    """Rows 13/14 (CTR and STR taught / one customer's transactions analysed) and 20/21 (a Fed rise scenario /
    CIP and swap points) are different tasks a person keeps; the real e5 flagged them at its global threshold."""
    report = lint_seeds(load_seeds(FINANCE))
    pairs = {(f.other_row, f.row) for f in report.findings if f.kind == "near_duplicate_embedding"}
    assert not pairs & {(13, 14), (20, 21)}, report.findings
    assert any("multilingual-e5" in n and "ko: >=" in n for n in report.notes), report.notes
