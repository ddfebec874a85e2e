"""Novelty and diversity: Self-Instruct's ROUGE-L filter, an embedding cosine filter, and per-round
diversity numbers.

- ROUGE-L (Lin, 2004) F-measure on tokens, as Self-Instruct (Wang et al., 2023) uses it: a new
  instruction is kept when its ROUGE-L with every instruction already in the pool is <= 0.7.
  Tokens: lower-cased words of letters and digits; Hangul (and CJK) are taken one character
  (syllable) at a time, because Korean words carry particles ("서울의", "서울에서") that would hide
  a shared stem. The LCS is the bit-parallel algorithm of Hyyrö (2004) on Python integers: one
  pass over the shorter side's tokens per comparison, so thousands of comparisons take milliseconds.
- Cosine: two texts whose normalised embeddings have cosine >= the embedder's calibrated threshold
  (`embed.near_duplicate_threshold`; 0.9 for an uncalibrated model) are near-duplicates.
- Per round: mean pairwise cosine distance, mean nearest-neighbour distance, share of near-duplicates
  and a cluster count (agglomerative clustering, average linkage, cosine distance threshold).

`max_rouge_l(text, others)` is what the pipeline calls inside a run; `near_duplicate_pairs`,
`mark_duplicates` and `diversity_frame` work on a finished run.
"""
from __future__ import annotations

import functools
import re
from collections import Counter
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from evolab.embeddings.embed import normalise_rows
from evolab.embeddings.thresholds import COSINE_DUPLICATE  # noqa: F401 (novelty's API)

ROUGE_L_MAX = 0.7  # Self-Instruct: keep when ROUGE-L <= 0.7
CLUSTER_DISTANCE = 0.5  # agglomerative clustering: merge while average cosine distance < 0.5
CLUSTER_MAX_ROWS = 3000  # clustering is O(n^2) memory: larger groups are subsampled deterministically

_CJK = "\uac00-\ud7a3\u1100-\u11ff\u3130-\u318f\u4e00-\u9fff\u3040-\u30ff"
_TOKEN_RE = re.compile(rf"[{_CJK}]|[^\W_{_CJK}]+")


@functools.lru_cache(maxsize=65536)
def tokenize(text: str) -> tuple[str, ...]:
    """Lower-cased word tokens; Hangul/CJK one character per token. Punctuation is dropped."""
    return tuple(_TOKEN_RE.findall((text or "").lower()))


def _masks(tokens: Sequence[str]) -> dict[str, int]:
    masks: dict[str, int] = {}
    for i, t in enumerate(tokens):
        masks[t] = masks.get(t, 0) | (1 << i)
    return masks


def _lcs_masks(masks: dict[str, int], n: int, other: Sequence[str]) -> int:
    """LCS length of the n tokens behind `masks` and `other` (Hyyrö's bit-vector recurrence)."""
    full = (1 << n) - 1
    v = full
    for t in other:
        u = v & masks.get(t, 0)
        if u:
            v = ((v + u) | (v - u)) & full
    return n - v.bit_count()


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence of two token sequences."""
    if not a or not b:
        return 0
    return _lcs_masks(_masks(a), len(a), b)


def _f_measure(lcs: int, n: int, m: int) -> float:
    # 2PR / (P + R) with P = lcs / m, R = lcs / n is 2 lcs / (n + m): one division, so a score exactly at the
    # limit (14 of 20 tokens: 0.7) is 0.7 and not 0.7000000000000001, which "over 0.7" would drop
    return 2 * lcs / (n + m) if lcs else 0.0


def rouge_l(a: str, b: str) -> float:
    """ROUGE-L F-measure (beta = 1, symmetric) of two texts; 0.0 when either has no tokens."""
    ta, tb = tokenize(a), tokenize(b)
    if not ta or not tb:
        return 0.0
    return _f_measure(lcs_length(ta, tb), len(ta), len(tb))


def rouge_l_scores(text: str, others: Iterable[str]) -> list[float]:
    """ROUGE-L of `text` against each of `others`."""
    ta = tokenize(text)
    masks, n = _masks(ta), len(ta)
    out = []
    for o in others:
        tb = tokenize(o)
        out.append(0.0 if not n or not tb else _f_measure(_lcs_masks(masks, n, tb), n, len(tb)))
    return out


def max_rouge_l(text: str, others: Iterable[str]) -> float:
    """The highest ROUGE-L of `text` against `others` (0.0 when there are none).

    Keep `text` when this is <= 0.7 (`is_novel`). Comparisons whose length ratio alone caps the
    score below the best so far are skipped. `others` may be a `RougeIndex` view (anything with its own
    `max_rouge_l`): it is asked instead of scanned, so a large pool costs a few candidates, not every text.
    """
    if hasattr(others, "max_rouge_l"):
        return others.max_rouge_l(text)
    ta = tokenize(text)
    n = len(ta)
    if not n:
        return 0.0
    masks = _masks(ta)
    best = 0.0
    for o in others:
        tb = tokenize(o)
        m = len(tb)
        if not m or 2 * min(n, m) / (n + m) <= best:  # LCS <= min(n, m) bounds F
            continue
        best = max(best, _f_measure(_lcs_masks(masks, n, tb), n, m))
        if best >= 1.0:
            break
    return best


def is_novel(text: str, others: Iterable[str], threshold: float = ROUGE_L_MAX) -> bool:
    """Self-Instruct's rule: novel when ROUGE-L with every other text is <= threshold."""
    return max_rouge_l(text, others) <= threshold


def rouge_l_keep(texts: Sequence[str], threshold: float = ROUGE_L_MAX, existing: Iterable[str] = ()) -> list[bool]:
    """Greedy filter in order, as Self-Instruct grows its pool: each text is compared with `existing`
    and every text kept before it. Returns a keep flag per text."""
    pool = list(existing)
    keep = []
    for t in texts:
        ok = max_rouge_l(t, pool) <= threshold
        keep.append(ok)
        if ok:
            pool.append(t)
    return keep


# -- embeddings ------------------------------------------------------------------------------------
def _ids_and_texts(df_or_texts: pd.DataFrame | Sequence[str]) -> tuple[list, list[str]]:
    if isinstance(df_or_texts, pd.DataFrame):
        df = df_or_texts
        ids = list(df["id"]) if "id" in df else list(range(len(df)))
        col = "instruction" if "instruction" in df else ("text" if "text" in df else None)
        texts = [str(t) for t in df[col]] if col else [""] * len(df)
        return ids, texts
    texts = [str(t) for t in df_or_texts]
    return list(range(len(texts))), texts


def near_duplicate_pairs(df_or_texts: pd.DataFrame | Sequence[str], vectors: np.ndarray,
                         threshold: float = COSINE_DUPLICATE, *, max_pairs: int | None = 100_000,
                         block: int = 1024) -> pd.DataFrame:
    """Pairs (i < j) whose cosine similarity is >= threshold, most similar first.

    Columns: i, j (row positions), id_a, id_b (the frame's `id`, else the positions), cosine, text_a, text_b.
    """
    ids, texts = _ids_and_texts(df_or_texts)
    cols = ["i", "j", "id_a", "id_b", "cosine", "text_a", "text_b"]
    v = normalise_rows(vectors) if len(ids) else np.zeros((0, 1), np.float32)
    if len(v) != len(ids):
        raise ValueError(f"{len(ids)} rows but {len(v)} vectors.")
    found_i, found_j, found_c = [], [], []
    for a in range(0, len(v), block):
        sims = v[a:a + block] @ v.T
        rows = np.arange(a, a + len(sims))[:, None]
        mask = (sims >= threshold) & (np.arange(len(v))[None, :] > rows)
        ii, jj = np.nonzero(mask)
        found_i.append(ii + a)
        found_j.append(jj)
        found_c.append(sims[ii, jj])
    if not found_i or not sum(len(x) for x in found_i):
        return pd.DataFrame({c: pd.Series(dtype=object if c in ("id_a", "id_b", "text_a", "text_b") else
                                          (float if c == "cosine" else int)) for c in cols})
    i, j, c = np.concatenate(found_i), np.concatenate(found_j), np.concatenate(found_c)
    order = np.argsort(-c, kind="stable")
    if max_pairs is not None:
        order = order[:max_pairs]
    i, j, c = i[order], j[order], c[order]
    return pd.DataFrame({"i": i, "j": j, "id_a": [ids[k] for k in i], "id_b": [ids[k] for k in j],
                         "cosine": c.astype(float), "text_a": [texts[k] for k in i],
                         "text_b": [texts[k] for k in j]})


def mark_duplicates(df: pd.DataFrame, vectors: np.ndarray, threshold: float = COSINE_DUPLICATE, *,
                    block: int = 1024) -> pd.DataFrame:
    """A copy of `df` with, per row: `max_cosine` (to any other row), `nearest_id`, `near_duplicate`
    (max_cosine >= threshold) and `duplicate_of` (the first *earlier* row, in frame order, at or above
    the threshold: what a keep-the-first filter would drop; None otherwise)."""
    out = df.copy()
    n = len(out)
    ids = list(out["id"]) if "id" in out else list(range(n))
    v = normalise_rows(vectors) if n else np.zeros((0, 1), np.float32)
    if len(v) != n:
        raise ValueError(f"{n} rows but {len(v)} vectors.")
    max_cos = np.full(n, np.nan)
    nearest: list = [None] * n
    dup_of: list = [None] * n
    for a in range(0, n, block):
        sims = v[a:a + block] @ v.T
        rows = np.arange(a, a + len(sims))
        sims[np.arange(len(sims)), rows] = -np.inf  # not its own neighbour
        if n > 1:
            best = sims.argmax(axis=1)
            max_cos[rows] = sims[np.arange(len(sims)), best]
            for r, b in zip(rows, best):
                nearest[r] = ids[b]
        earlier = (sims >= threshold) & (np.arange(n)[None, :] < rows[:, None])
        has = earlier.any(axis=1)
        first = earlier.argmax(axis=1)
        for k in np.nonzero(has)[0]:
            dup_of[rows[k]] = ids[first[k]]
    out["max_cosine"] = max_cos
    out["nearest_id"] = nearest
    out["near_duplicate"] = np.nan_to_num(max_cos, nan=-1.0) >= threshold
    out["duplicate_of"] = dup_of
    return out


def group_diversity(vectors: np.ndarray, threshold: float = COSINE_DUPLICATE,
                    cluster_distance: float = CLUSTER_DISTANCE, *, max_rows: int = CLUSTER_MAX_ROWS,
                    block: int = 1024) -> dict[str, float]:
    """Diversity numbers of one set of vectors (see `diversity_frame`)."""
    v = normalise_rows(vectors) if len(vectors) else np.zeros((0, 1), np.float32)
    n = len(v)
    out = {"n": n, "mean_pairwise_distance": np.nan, "mean_nn_distance": np.nan,
           "near_duplicate_share": np.nan, "clusters": float(n), "clusters_sampled": False}
    if n < 2:
        return out
    s = v.sum(axis=0, dtype=np.float64)
    # mean over ordered pairs i != j of v_i . v_j, without the n x n matrix
    mean_cos = (float(s @ s) - float((v.astype(np.float64) ** 2).sum())) / (n * (n - 1))
    out["mean_pairwise_distance"] = 1.0 - mean_cos
    nn = np.empty(n)
    for a in range(0, n, block):
        sims = v[a:a + block] @ v.T
        sims[np.arange(len(sims)), np.arange(a, a + len(sims))] = -np.inf
        nn[a:a + len(sims)] = sims.max(axis=1)
    out["mean_nn_distance"] = float(np.mean(1.0 - nn))
    out["near_duplicate_share"] = float(np.mean(nn >= threshold))
    out["clusters"], out["clusters_sampled"] = cluster_count(v, cluster_distance, max_rows=max_rows)
    return out


def cluster_count(vectors: np.ndarray, distance: float = CLUSTER_DISTANCE, *,
                  max_rows: int = CLUSTER_MAX_ROWS) -> tuple[float, bool]:
    """(number of clusters, sampled?) by agglomerative clustering with average linkage on cosine
    distance, merging while clusters are closer than `distance`. Over `max_rows` rows a fixed random
    subsample is clustered (and the flag is True)."""
    n = len(vectors)
    if n < 2:
        return float(n), False
    sampled = n > max_rows
    if sampled:
        idx = np.sort(np.random.default_rng(0).choice(n, size=max_rows, replace=False))
        vectors = vectors[idx]
    from sklearn.cluster import AgglomerativeClustering  # heavy: about 1 s, only when clusters are drawn

    model = AgglomerativeClustering(n_clusters=None, distance_threshold=distance, metric="cosine",
                                    linkage="average")
    labels = model.fit_predict(np.asarray(vectors, dtype=np.float64))
    return float(len(set(labels.tolist()))), sampled


def diversity_frame(df: pd.DataFrame, vectors: np.ndarray, *, by: str | Sequence[str] = "round",
                    statuses: Iterable[str] | None = ("seed", "kept"), threshold: float = COSINE_DUPLICATE,
                    cluster_distance: float = CLUSTER_DISTANCE) -> pd.DataFrame:
    """Per group (by default per round; `by=["run_id", "round"]` to compare runs): n,
    mean_pairwise_distance (1 - mean cosine over pairs), mean_nn_distance (mean of 1 - cosine to the
    nearest other member), near_duplicate_share (members with another member at cosine >= threshold),
    clusters (agglomerative count), clusters_sampled.

    By default only the pool the evolution keeps counts (status seed or kept); `statuses=None` takes all rows.
    """
    by = [by] if isinstance(by, str) else list(by)
    cols = by + ["n", "mean_pairwise_distance", "mean_nn_distance", "near_duplicate_share", "clusters",
                 "clusters_sampled"]
    v = np.asarray(vectors)
    if len(df) != len(v):
        raise ValueError(f"{len(df)} rows but {len(v)} vectors.")
    mask = np.ones(len(df), dtype=bool)
    if statuses is not None and "status" in df:
        mask = df["status"].isin(list(statuses)).to_numpy()
    sub = df.loc[mask].reset_index(drop=True)
    v = v[mask]
    if sub.empty:
        return pd.DataFrame(columns=cols)
    rows = []
    for key, idx in sub.groupby(by, sort=True).indices.items():
        key = key if isinstance(key, tuple) else (key,)
        stats = group_diversity(v[idx], threshold, cluster_distance)
        rows.append({**dict(zip(by, key)), **stats})
    return pd.DataFrame(rows, columns=cols)


# -- ROUGE-L at scale: MinHash LSH finds the candidates, ROUGE-L confirms them ----------------------------
# ROUGE-L's LCS is at most the multiset intersection I of the two token lists, so F = 2 LCS / (n + m) > t
# needs I > t (n + m) / 2, i.e. a multiset Jaccard I / (n + m - I) > t / (2 - t) (0.538 for t = 0.7). MinHash
# over tokens tagged with their occurrence ("the#0", "the#1") estimates that multiset Jaccard; LSH with 42 bands
# of 3 rows (126 permutations) returns a pair at Jaccard 0.538 with probability 0.9992 (0.29 at 0.2, 0.04 at
# 0.1), so ROUGE-L runs on a small share of the pool and the decisions match the exact check.
LSH_BANDS, LSH_ROWS = 42, 3
LSH_PERMUTATIONS = LSH_BANDS * LSH_ROWS
LSH_MIN_POOL = 2000  # below this the exact check is cheap (under 50 ms a text here) and is used instead


def jaccard_floor(threshold: float = ROUGE_L_MAX) -> float:
    """The multiset Jaccard a pair needs to reach ROUGE-L F > threshold (t / (2 - t))."""
    return threshold / (2 - threshold)


def lsh_candidate_probability(jaccard: float, bands: int = LSH_BANDS, rows: int = LSH_ROWS) -> float:
    """Chance that LSH returns a pair of this Jaccard as a candidate: 1 - (1 - J^r)^b."""
    return 1 - (1 - jaccard ** rows) ** bands


def _shingles(tokens: Sequence[str]) -> list[bytes]:
    seen: dict[str, int] = {}
    out = []
    for t in tokens:
        k = seen.get(t, 0)
        seen[t] = k + 1
        out.append(f"{t}\x00{k}".encode("utf-8"))
    return out


def minhashes(texts: Sequence[str]) -> list:
    """One MinHash per text over its occurrence-tagged tokens (datasketch, computed in bulk)."""
    from datasketch import MinHash  # pulls scipy: only when a pool is large enough for LSH

    return MinHash.bulk([_shingles(tokenize(t)) or [b"\x00empty"] for t in texts], num_perm=LSH_PERMUTATIONS)


class RougeIndex:
    """A pool of texts that answers "the highest ROUGE-L of this text with the pool" without comparing it with
    every text: MinHash LSH (datasketch) proposes the texts that can be over the threshold, ROUGE-L decides.
    Each text may carry a group (a seed lineage): `max_rouge_l(text, exclude=group)` leaves that group out.
    `exact=True` compares with every text (the reference the LSH path is measured against)."""

    def __init__(self, texts: Sequence[str] = (), groups: Sequence[object] | None = None, *,
                 threshold: float = ROUGE_L_MAX, exact: bool | None = None):
        self.threshold = threshold
        self.texts: list[str] = []
        self.groups: list[object] = []
        self.group_sizes: Counter = Counter()
        self.exact = (len(texts) < LSH_MIN_POOL) if exact is None else exact
        self._lsh = None
        if not self.exact:
            from datasketch import MinHashLSH  # pulls scipy (about 0.5 s): only when a pool is large enough for LSH

            self._lsh = MinHashLSH(num_perm=LSH_PERMUTATIONS, params=(LSH_BANDS, LSH_ROWS))
        self.add_many(texts, groups)

    def __len__(self) -> int:
        return len(self.texts)

    def __iter__(self):
        return iter(self.texts)

    def add_many(self, texts: Sequence[str], groups: Sequence[object] | None = None) -> None:
        texts = list(texts)
        groups = list(groups) if groups is not None else [None] * len(texts)
        start = len(self.texts)
        self.texts.extend(texts)
        self.groups.extend(groups)
        self.group_sizes.update(groups)
        if self._lsh is not None and texts:
            with self._lsh.insertion_session() as session:
                for k, m in enumerate(minhashes(texts)):
                    session.insert(start + k, m)

    def add(self, text: str, group: object = None, minhash=None) -> None:
        if self._lsh is None or minhash is not None:
            if self._lsh is not None:
                self._lsh.insert(len(self.texts), minhash)
            self.texts.append(text)
            self.groups.append(group)
            self.group_sizes[group] += 1
        else:
            self.add_many([text], [group])

    def candidates(self, text: str, minhash=None) -> list[int]:
        """Positions of the pool's texts to compare `text` with (all of them when exact)."""
        if self._lsh is None:
            return list(range(len(self.texts)))
        if not self.texts:
            return []
        m = minhash if minhash is not None else minhashes([text])[0]
        return sorted(self._lsh.query(m))

    def closest(self, text: str, *, exclude: object = None, minhash=None) -> tuple[float, int | None]:
        """(highest ROUGE-L of `text` with the pool, the position of that text) leaving group `exclude` out;
        (0.0, None) when nothing is comparable. Through LSH only candidates count: a pair LSH misses
        (rare: see `lsh_candidate_probability`) reads as 0."""
        ta = tokenize(text)
        n = len(ta)
        if not n:
            return 0.0, None
        masks, best, at = _masks(ta), 0.0, None
        for i in self.candidates(text, minhash):
            if exclude is not None and self.groups[i] == exclude:
                continue
            tb = tokenize(self.texts[i])
            m = len(tb)
            if not m or 2 * min(n, m) / (n + m) <= best:  # the lengths alone cap F under the best so far
                continue
            score = _f_measure(_lcs_masks(masks, n, tb), n, m)
            if score > best:
                best, at = score, i
        return best, at

    def max_rouge_l(self, text: str, *, exclude: object = None) -> float:
        return self.closest(text, exclude=exclude)[0]

    def excluding(self, group: object) -> "RougePoolView":
        return RougePoolView(self, group)


class RougePoolView:
    """The pool as one child sees it (its own lineage left out): what `--dedup` compares it with. Iterates
    like the list of texts it stands for; `max_rouge_l(text, view)` asks the index instead of scanning it."""

    def __init__(self, index: RougeIndex, exclude: object):
        self.index, self.exclude = index, exclude

    def __bool__(self) -> bool:
        return len(self.index) > self.index.group_sizes.get(self.exclude, 0)

    def __iter__(self):
        return (t for t, g in zip(self.index.texts, self.index.groups) if g != self.exclude)

    def max_rouge_l(self, text: str) -> float:
        return self.index.max_rouge_l(text, exclude=self.exclude)


def rouge_duplicates_lsh(texts: Sequence[str], threshold: float = ROUGE_L_MAX, *,
                         exact: bool | None = None) -> list[tuple[int, int, float]]:
    """(j, i, ROUGE-L) for each text j whose closest *earlier* text i has ROUGE-L over the threshold (the
    pairs a keep-the-first filter drops), through a `RougeIndex` grown in order."""
    texts = list(texts)
    index = RougeIndex(threshold=threshold, exact=(len(texts) < LSH_MIN_POOL) if exact is None else exact)
    hashes = minhashes(texts) if not index.exact else [None] * len(texts)
    out = []
    for j, (t, m) in enumerate(zip(texts, hashes)):
        score, i = index.closest(t, minhash=m)
        if i is not None and score > threshold:
            out.append((j, i, score))
        index.add(t, minhash=m)
    return out
