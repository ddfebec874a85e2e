"""Dedup at scale: MinHash LSH proposes candidates, ROUGE-L confirms them (evolab/embeddings/novelty.py).
The LSH path must make the same keep/drop decisions as the exact check (every pair compared) on these sets: the
shipped seed sets, the labelled paraphrase pairs, and edits of them whose ROUGE-L lands on both sides of 0.7."""
from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from evolab.embeddings import novelty
from evolab.embeddings.novelty import ROUGE_L_MAX, RougeIndex, rouge_duplicates_lsh
from evolab.schema import Seed
from evolab.seeds import lint
from evolab.seeds.files import load_seeds

ROOT = Path(__file__).resolve().parent.parent
FILLER = ("carefully", "in detail", "for a beginner", "with two examples", "step by step", "in under 200 words",
          "using a table", "and cite a source", "for a small business", "in plain words")


def base_texts() -> list[str]:
    texts = [s.instruction for name in ("general", "finance") for s in load_seeds(ROOT / "evolab" / "data" / f"{name}.jsonl")]
    for line in (ROOT / "tests" / "data" / "embeddings" / "pairs.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        texts += [row["a"], row["b"]]
    return list(dict.fromkeys(texts))


def edited(text: str, rng: random.Random) -> str:
    """A rewrite that keeps part of the words: drops, swaps and added clauses, as evolution and paraphrase do."""
    words = text.split()
    for _ in range(rng.randint(0, 4)):
        kind = rng.random()
        if kind < 0.4 and len(words) > 3:
            del words[rng.randrange(len(words))]
        elif kind < 0.7:
            words.insert(rng.randrange(len(words) + 1), rng.choice(FILLER))
        elif len(words) > 2:
            i = rng.randrange(len(words) - 1)
            words[i], words[i + 1] = words[i + 1], words[i]
    return " ".join(words)


@pytest.fixture(scope="module")
def pool() -> list[str]:
    rng = random.Random(7)
    texts = base_texts()
    out = list(texts)
    for t in texts:
        out += [edited(t, rng) for _ in range(3)]
    rng.shuffle(out)
    return out


def exact_decisions(texts):
    return [(j, i) for j, i, _ in rouge_duplicates_lsh(texts, exact=True)]


def test_the_sets_have_pairs_on_both_sides_of_the_limit(pool):
    found = rouge_duplicates_lsh(pool, exact=True)
    scores = [s for _, _, s in found]
    assert len(found) > 200  # many drops to agree on
    assert min(scores) < 0.75  # some just over the limit, where LSH is most likely to miss
    assert len(found) < len(pool) - 300  # and many kept


def test_lsh_and_exact_dedup_make_the_same_decisions(pool):
    exact = rouge_duplicates_lsh(pool, exact=True)
    fast = rouge_duplicates_lsh(pool, exact=False)
    assert [j for j, _, _ in fast] == [j for j, _, _ in exact]  # the same texts dropped
    # and each matched with a text over the limit (the closest earlier one, or one as close)
    assert all(s > ROUGE_L_MAX for _, _, s in fast)
    assert [round(s, 6) for _, _, s in fast] == [round(s, 6) for _, _, s in exact]


def test_lsh_compares_a_text_with_a_small_part_of_the_pool(pool):
    index = RougeIndex(pool, exact=False)
    probe = pool[:100]
    compared = sum(len(index.candidates(t)) for t in probe)
    assert compared < 0.25 * len(pool) * len(probe)
    assert RougeIndex(pool[:10]).exact  # a small pool stays exact: every text is compared


def test_the_index_leaves_a_lineage_out_and_max_rouge_l_asks_it():
    texts = ["Write a poem about the sea at night", "Write a poem about the sea at night in ten lines",
             "Explain how a bond fund reacts to rising interest rates"]
    for exact in (True, False):
        index = RougeIndex(texts, ["a", "b", "c"], exact=exact)
        view = index.excluding("b")
        assert novelty.max_rouge_l("Write a poem about the sea at night in ten lines", view) == pytest.approx(
            novelty.max_rouge_l("Write a poem about the sea at night in ten lines", [texts[0], texts[2]]))
        assert list(view) == [texts[0], texts[2]] and bool(view)
        lonely = RougeIndex(["only one"], ["a"], exact=exact).excluding("a")
        assert not lonely and novelty.max_rouge_l("only one", lonely) == 0.0


def test_the_candidate_probability_at_the_jaccard_floor_is_near_one():
    floor = novelty.jaccard_floor(ROUGE_L_MAX)
    assert floor == pytest.approx(0.7 / 1.3)
    assert novelty.lsh_candidate_probability(floor) > 0.999
    assert novelty.lsh_candidate_probability(0.1) < 0.05


def test_seed_lint_through_lsh_finds_what_the_exact_lint_finds(pool, monkeypatch):
    seeds = [Seed(instruction=t) for t in pool[:1500]]
    exact = [(f.row, f.other_row) for f in lint._rouge_duplicates([s.instruction for s in seeds], set())]
    monkeypatch.setattr(lint, "LSH_MIN_ROWS", 100)  # the same rows through the LSH path
    fast = [(f.row, f.other_row) for f in lint._rouge_duplicates([s.instruction for s in seeds], set())]
    assert [r for r, _ in fast] == [r for r, _ in exact] and len(exact) > 50
