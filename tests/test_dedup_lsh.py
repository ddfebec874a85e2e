"""Dedup at scale: MinHash LSH proposes candidates, ROUGE-L confirms them (evolab/embeddings/novelty.py).
The LSH path must make the same keep/drop decisions as the exact check (every pair compared) on these sets: the
shipped seed sets, the labelled paraphrase pairs, and edits of them whose ROUGE-L lands on both sides of 0.7."""
from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
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


def test_lsh_compares_a_text_with_a_few_texts_of_the_pool(pool):
    index = RougeIndex(pool, exact=False)
    probe = pool[:100]
    hits = sum(len(index.band_hits(t)) for t in probe)
    compared = sum(len(index.candidates(t)) for t in probe)
    assert hits < 0.05 * len(pool) * len(probe)
    assert compared < 8 * len(probe)  # the text itself, its 3 edits or source, and few others
    assert RougeIndex(pool[:10]).exact  # a small pool stays exact: every text is compared


def zipf_texts(n: int, seed: int) -> list[str]:
    """Texts of 8-40 words from one Zipf vocabulary of 5,000 words: unrelated texts that share frequent words."""
    rng = random.Random(seed)
    words = [f"w{k}" for k in range(5000)]
    weights = [1 / (k + 1) for k in range(5000)]
    return [" ".join(rng.choices(words, weights, k=rng.randint(8, 40))) for _ in range(n)]


def test_unrelated_texts_reach_rouge_l_rarely_however_large_the_pool():
    texts = zipf_texts(20_300, 3)
    probes = texts[20_000:]
    compared = {}
    for size in (2_000, 20_000):
        index = RougeIndex(texts[:size], exact=False)
        compared[size] = sum(len(index.candidates(t)) for t in probes) / len(probes)
        hits = sum(len(index.band_hits(t)) for t in probes) / len(probes)
        assert hits < 0.01 * size  # LSH returns a small share of the pool (3 rows a band returned about 5 %)
    # the Jaccard estimate leaves ROUGE-L almost nothing to compare, at 2,000 as at 20,000
    assert compared[20_000] < 0.5
    assert all(novelty.max_rouge_l(t, texts[:2_000]) <= ROUGE_L_MAX for t in probes[:20])  # unrelated indeed


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


def test_the_chance_to_miss_a_pair_at_the_jaccard_floor_is_under_one_in_a_thousand():
    floor = novelty.jaccard_floor(ROUGE_L_MAX)
    assert floor == pytest.approx(0.7 / 1.3)
    assert novelty.lsh_candidate_probability(floor) > 0.999
    assert novelty.miss_probability(floor) < 1e-3
    # pairs further over the floor are missed less; background pairs rarely even reach LSH
    assert novelty.miss_probability(0.6) < novelty.miss_probability(floor) / 100
    assert novelty.lsh_candidate_probability(0.2) < 0.06 and novelty.lsh_candidate_probability(0.1) < 0.002
    # without the estimate, the miss chance is LSH's alone
    assert novelty.miss_probability(floor, min_matches=0) == pytest.approx(1 - novelty.lsh_candidate_probability(floor))


def pairs_at_jaccard(n_pairs: int, shared: int, own: int, seed: int) -> tuple[list[str], list[str]]:
    """Pairs of texts of distinct made-up words with `shared` words in common and `own` of their own each: their
    multiset Jaccard is shared / (shared + 2 own), and no two pairs share a word."""
    rng = random.Random(seed)
    a, b = [], []
    for p in range(n_pairs):
        common = [f"s{p}x{k}" for k in range(shared)]
        left = common + [f"a{p}x{k}" for k in range(own)]
        right = common + [f"b{p}x{k}" for k in range(own)]
        rng.shuffle(left), rng.shuffle(right)
        a.append(" ".join(left))
        b.append(" ".join(right))
    return a, b


def test_the_hashing_behaves_as_the_miss_probability_assumes():
    # Jaccard 18 / 40 = 0.45, where a miss is common enough (0.16) to count: the implemented hashing must miss
    # as often as the formula for random permutations says, so its figure at the floor (6e-4) can be trusted
    a, b = pairs_at_jaccard(3000, 18, 11, seed=5)
    sa, sb = novelty.minhashes(a), novelty.minhashes(b)
    assert (sa == sb).mean() == pytest.approx(0.45, abs=0.01)  # each permutation matches with chance J
    rows = novelty.LSH_ROWS
    full = (sa == sb).reshape(len(a), -1, rows).all(axis=2).mean()
    assert full == pytest.approx(0.45 ** rows, rel=0.1)  # a band matches with chance J^r
    index = RougeIndex(a, exact=False)
    missed = np.mean([k not in index.candidates(t, s) for k, (t, s) in enumerate(zip(b, sb))])
    assert missed == pytest.approx(novelty.miss_probability(0.45), abs=0.03)


def test_signatures_are_datasketchs_minhash():
    from datasketch import MinHash

    texts = ["Write a poem about the sea, the sea at night", "사회초년생의 첫 월급 예산 계획", "a"]
    for text, signature in zip(texts, novelty.minhashes(texts)):
        reference = MinHash(num_perm=novelty.LSH_PERMUTATIONS, seed=novelty.MINHASH_SEED, hashfunc=int)
        reference.update_batch(novelty.shingle_hashes([text])[0].tolist())
        assert (reference.hashvalues == signature).all()
    assert (novelty.minhashes([""]) == 0xFFFFFFFF).all()  # no tokens: the empty signature, never banded


def test_texts_added_one_by_one_are_found_as_those_added_at_once(pool):
    at_once = RougeIndex(pool[:600], exact=False)
    one_by_one = RougeIndex(exact=False)
    for t in pool[:600]:
        one_by_one.add(t)
    assert len(one_by_one._bands.runs) > 1  # several sorted runs to search
    for t in pool[600:700]:
        assert one_by_one.candidates(t) == at_once.candidates(t)


def test_seed_lint_through_lsh_finds_what_the_exact_lint_finds(pool, monkeypatch):
    seeds = [Seed(instruction=t) for t in pool[:1500]]
    exact = [(f.row, f.other_row) for f in lint._rouge_duplicates([s.instruction for s in seeds], set())]
    monkeypatch.setattr(lint, "LSH_MIN_ROWS", 100)  # the same rows through the LSH path
    fast = [(f.row, f.other_row) for f in lint._rouge_duplicates([s.instruction for s in seeds], set())]
    assert [r for r, _ in fast] == [r for r, _ in exact] and len(exact) > 50
