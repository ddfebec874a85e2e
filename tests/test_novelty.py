import math
import random

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evolab.embeddings import novelty
from evolab.embeddings.novelty import (
    diversity_frame,
    group_diversity,
    is_novel,
    lcs_length,
    mark_duplicates,
    max_rouge_l,
    near_duplicate_pairs,
    rouge_l,
    rouge_l_keep,
    rouge_l_scores,
    tokenize,
)


def lcs_dp(a, b):
    table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i, x in enumerate(a):
        for j, y in enumerate(b):
            table[i + 1][j + 1] = table[i][j] + 1 if x == y else max(table[i][j + 1], table[i + 1][j])
    return table[-1][-1]


# -- tokens ------------------------------------------------------------------------------------------------
def test_tokenize_english_lowercases_and_drops_punctuation():
    assert tokenize("Write a POEM, about cats!") == ("write", "a", "poem", "about", "cats")
    assert tokenize("GPT-4 scored 3.5") == ("gpt", "4", "scored", "3", "5")


def test_tokenize_korean_by_syllable_and_mixed_scripts():
    assert tokenize("서울의 날씨") == ("서", "울", "의", "날", "씨")
    assert tokenize("GPT를 써서") == ("gpt", "를", "써", "서")


def test_tokenize_empty_and_punctuation_only():
    assert tokenize("") == () and tokenize("?!... ---") == ()


# -- ROUGE-L against hand-computed values ---------------------------------------------------------------------
def test_rouge_l_hand_examples():
    # LCS "the cat on the mat" = 5 of 6 and 6 tokens: P = R = 5/6
    assert rouge_l("the cat sat on the mat", "the cat was on the mat") == pytest.approx(5 / 6)
    # LCS "a c" = 2: P = 2/2, R = 2/4 -> F = 2 * 1 * 0.5 / 1.5
    assert rouge_l("a b c d", "a c") == pytest.approx(2 / 3)
    # LCS "police killed gunman" = 3 of 4 and 4 (Lin 2004's example): F = 0.75
    assert rouge_l("police killed the gunman", "police kill the gunman") == pytest.approx(0.75)
    assert rouge_l("police killed the gunman", "the gunman kill police") == pytest.approx(0.5)
    assert rouge_l("same words here", "Same words, here.") == 1.0
    assert rouge_l("alpha beta", "gamma delta") == 0.0
    assert rouge_l("", "anything") == 0.0 and rouge_l("", "") == 0.0


def test_rouge_l_korean_by_syllables():
    # 11 syllables each, the first two differ: LCS 9 -> F = 9/11
    assert rouge_l("서울의 날씨를 설명하세요", "부산의 날씨를 설명하세요") == pytest.approx(9 / 11)
    assert rouge_l("서울의 날씨를 설명하세요", "고양이에 대한 시를 쓰세요") < 0.5


def test_self_instruct_threshold():
    pool = ["Write a poem about the sea.", "Explain how vaccines work."]
    assert not is_novel("Write a poem about the sea!", pool)  # 1.0 > 0.7
    assert is_novel("List three prime numbers.", pool)
    # exactly 0.7 is kept (<= 0.7): 7 shared tokens of 10 and 10
    a = "one two three four five six seven eight nine ten"
    b = "one two three four five six seven x y z"
    assert rouge_l(a, b) == pytest.approx(0.7)
    assert is_novel(b, [a])


def test_max_rouge_l_and_scores():
    others = ["the cat sat on the mat", "a b c d", "the cat was on the mat"]
    assert rouge_l_scores("the cat sat on the mat", others) == pytest.approx([1.0, 0.0, 5 / 6])
    assert max_rouge_l("the cat was on the mat", others) == 1.0
    assert max_rouge_l("anything", []) == 0.0
    assert max_rouge_l("", others) == 0.0


def test_rouge_l_keep_is_greedy_in_order():
    texts = ["Write a poem about the sea.", "Write a poem about the sea!", "Explain tides.", "explain tides"]
    assert rouge_l_keep(texts) == [True, False, True, False]
    assert rouge_l_keep(["Explain tides."], existing=["explain tides"]) == [False]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from("abcde"), max_size=80), st.lists(st.sampled_from("abcde"), max_size=80))
def test_bit_parallel_lcs_matches_dynamic_programming(a, b):
    assert lcs_length(a, b) == lcs_dp(a, b)


words = st.sampled_from(["cat", "dog", "sea", "the", "a", "서울", "날씨", "x1", "Why?"])
sentences = st.lists(words, max_size=25).map(" ".join)


@settings(max_examples=200, deadline=None)
@given(sentences, st.lists(sentences, max_size=8))
def test_max_rouge_l_equals_max_of_scores_and_is_symmetric(text, others):
    scores = rouge_l_scores(text, others)
    assert max_rouge_l(text, others) == pytest.approx(max(scores, default=0.0))
    for o, s in zip(others, scores):
        assert rouge_l(o, text) == pytest.approx(s)
        assert 0.0 <= s <= 1.0


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=200), st.text(max_size=200))
def test_rouge_l_never_crashes(a, b):
    assert 0.0 <= rouge_l(a, b) <= 1.0


def test_batch_scores_agree_with_one_pair_at_a_time():
    """The bit-parallel batch path (what dedup and seed growing use on thousands of texts; its speed is
    measured in bench/rouge.py) gives each pair's own ROUGE-L, and the max is the max of those."""
    rng = random.Random(0)
    vocab = [f"w{i}" for i in range(40)] + ["가", "나", "다"]
    texts = [" ".join(rng.choice(vocab) for _ in range(rng.randint(1, 40))) for _ in range(300)]
    novelty.tokenize.cache_clear()
    scores = rouge_l_scores(texts[0], texts[1:])
    assert scores == pytest.approx([rouge_l(texts[0], t) for t in texts[1:]])
    assert max_rouge_l(texts[1], texts[2:]) == pytest.approx(max(rouge_l(texts[1], t) for t in texts[2:]))


# -- cosine ----------------------------------------------------------------------------------------------
@pytest.fixture
def frame_and_vectors():
    df = pd.DataFrame({"id": ["a", "b", "c", "d", "e"], "round": [0, 0, 1, 1, 1],
                       "status": ["seed", "seed", "kept", "kept", "eliminated"],
                       "instruction": ["A", "B", "C", "C'", "E"]})
    v = np.zeros((5, 4), dtype=np.float32)
    v[0, 0] = v[1, 1] = v[2, 2] = 1.0
    v[3] = [0.0, 0.0, 0.95, math.sqrt(1 - 0.95 ** 2)]  # cosine 0.95 with c
    v[4] = [0.0, 0.0, 0.0, 1.0]
    return df, v


def test_near_duplicate_pairs(frame_and_vectors):
    df, v = frame_and_vectors
    pairs = near_duplicate_pairs(df, v, 0.9)
    assert len(pairs) == 1
    row = pairs.iloc[0]
    assert (row["id_a"], row["id_b"], row["text_a"], row["text_b"]) == ("c", "d", "C", "C'")
    assert row["cosine"] == pytest.approx(0.95, abs=1e-6)
    assert near_duplicate_pairs(["x", "y"], v[:2], 0.9).empty
    # plain texts: ids are positions
    assert list(near_duplicate_pairs(list("abcde"), v, 0.9)[["i", "j"]].iloc[0]) == [2, 3]


def test_near_duplicate_pairs_in_blocks_match_one_block():
    rng = np.random.default_rng(1)
    base = rng.normal(size=(30, 8))
    v = np.vstack([base, base + rng.normal(scale=0.05, size=base.shape)])
    texts = [str(i) for i in range(len(v))]
    one = near_duplicate_pairs(texts, v, 0.9)
    small = near_duplicate_pairs(texts, v, 0.9, block=7)
    assert len(one) >= 30
    assert set(map(tuple, one[["i", "j"]].to_numpy())) == set(map(tuple, small[["i", "j"]].to_numpy()))


def test_mark_duplicates(frame_and_vectors):
    df, v = frame_and_vectors
    marked = mark_duplicates(df, v, 0.9)
    assert list(marked["near_duplicate"]) == [False, False, True, True, False]
    assert marked["duplicate_of"].isna().tolist() == [True, True, True, False, True]
    assert marked.loc[3, "duplicate_of"] == "c" and marked.loc[2, "nearest_id"] == "d"
    assert marked.loc[2, "max_cosine"] == pytest.approx(0.95, abs=1e-6)
    assert "duplicate_of" not in df  # the input is not changed


def test_group_diversity_hand_values():
    eye = np.eye(3, dtype=np.float32)
    g = group_diversity(eye)
    assert g["mean_pairwise_distance"] == pytest.approx(1.0)
    assert g["mean_nn_distance"] == pytest.approx(1.0)
    assert g["near_duplicate_share"] == 0.0 and g["clusters"] == 3
    same = np.ones((4, 3), dtype=np.float32)
    g = group_diversity(same)
    assert g["mean_pairwise_distance"] == pytest.approx(0.0, abs=1e-6)
    assert g["near_duplicate_share"] == 1.0 and g["clusters"] == 1
    one = group_diversity(eye[:1])
    assert one["n"] == 1 and math.isnan(one["mean_pairwise_distance"]) and one["clusters"] == 1


def test_diversity_frame_per_round(frame_and_vectors):
    df, v = frame_and_vectors
    div = diversity_frame(df, v)  # seed + kept only: e is left out
    assert list(div["round"]) == [0, 1] and list(div["n"]) == [2, 2]
    r1 = div.set_index("round").loc[1]
    assert r1["near_duplicate_share"] == 1.0
    assert r1["mean_pairwise_distance"] == pytest.approx(0.05, abs=1e-5)
    assert r1["clusters"] == 1
    assert div.set_index("round").loc[0, "clusters"] == 2
    all_rows = diversity_frame(df, v, statuses=None)
    assert list(all_rows["n"]) == [2, 3]
    by_run = diversity_frame(df.assign(run_id=["r1", "r1", "r1", "r2", "r2"]), v, by=["run_id", "round"])
    assert list(by_run[["run_id", "round"]].itertuples(index=False, name=None)) == [("r1", 0), ("r1", 1), ("r2", 1)]


def test_diversity_frame_empty():
    df = pd.DataFrame({"round": [], "status": []})
    assert diversity_frame(df, np.zeros((0, 4))).empty


def test_cluster_count_subsamples_large_groups():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 16))
    v = np.vstack([c + rng.normal(scale=0.01, size=(40, 16)) for c in centres])
    count, sampled = novelty.cluster_count(v, 0.5, max_rows=60)
    assert sampled and count == 3
    assert novelty.cluster_count(v, 0.5) == (3.0, False)
