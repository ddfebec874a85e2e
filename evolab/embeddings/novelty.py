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
import hashlib
import math
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


# -- ROUGE-L at scale: MinHash LSH finds the candidates, the signatures' Jaccard estimate and ROUGE-L confirm --
# ROUGE-L's LCS is at most the multiset intersection I of the two token lists, so F = 2 LCS / (n + m) > t needs
# I > t (n + m) / 2, i.e. a multiset Jaccard I / (n + m - I) > t / (2 - t) (0.538 for t = 0.7). MinHash over
# tokens tagged with their occurrence ("the#0", "the#1") estimates that multiset Jaccard.
# Three stages, each cheap per pool text it looks at:
# 1. LSH, 160 bands of 5 rows (800 permutations): a pair at the floor becomes a candidate with probability
#    0.9994; background pairs (texts that share only frequent words, Jaccard 0.1-0.3) rarely: 0.0016 at 0.1,
#    0.05 at 0.2 (3 rows made that 0.29 and flooded ROUGE-L with them).
# 2. The Jaccard estimate of the first 255 permutations (vectorised over the candidates), kept 4 standard errors
#    under the floor, and the exact length bound: what is left is near-duplicates and few others.
# 3. ROUGE-L on those.
# `miss_probability(J)` is the chance, for random permutations, that a pair of Jaccard J fails stage 1 or 2
# (6.4e-4 at the floor, 2.4e-6 at 0.6).
LSH_BANDS, LSH_ROWS = 160, 5
LSH_PERMUTATIONS = LSH_BANDS * LSH_ROWS
ESTIMATE_COLUMNS = 255  # the first 51 bands' columns: the estimate's standard error at the floor is 0.031
ESTIMATE_MARGIN_SE = 4.0  # keep candidates whose estimate is over the floor minus 4 standard errors
LSH_MIN_POOL = 2000  # below this the exact check is cheap (under 50 ms a text here) and is used instead
MINHASH_SEED = 1  # datasketch's default: the permutations are datasketch's MinHash's own


def jaccard_floor(threshold: float = ROUGE_L_MAX) -> float:
    """The multiset Jaccard a pair needs to reach ROUGE-L F > threshold (t / (2 - t))."""
    return threshold / (2 - threshold)


def lsh_candidate_probability(jaccard: float, bands: int = LSH_BANDS, rows: int = LSH_ROWS) -> float:
    """Chance that LSH returns a pair of this Jaccard as a candidate: 1 - (1 - J^r)^b."""
    return 1 - (1 - jaccard ** rows) ** bands


def estimate_min_matches(floor: float, columns: int = ESTIMATE_COLUMNS, margin_se: float = ESTIMATE_MARGIN_SE) -> int:
    """Matching signature columns (of `columns`) a candidate needs: the floor minus `margin_se` standard errors
    of the MinHash estimate (sqrt(J (1 - J) / k) at J = floor)."""
    se = math.sqrt(floor * (1 - floor) / columns)
    return max(0, math.ceil(columns * (floor - margin_se * se)))


def miss_probability(jaccard: float, bands: int = LSH_BANDS, rows: int = LSH_ROWS,
                     columns: int = ESTIMATE_COLUMNS, min_matches: int | None = None) -> float:
    """Chance that a pair of this multiset Jaccard is never compared by ROUGE-L: LSH does not return it, or its
    estimate over the first `columns` permutations is under `min_matches`. Exact for independent random
    permutations (the estimate's columns are the first bands' rows, so the two stages are counted together); the
    index compares 8 bits of each value, whose chance matches only add, so its miss chance is at most this."""
    min_matches = estimate_min_matches(jaccard_floor(), columns) if min_matches is None else min_matches
    est_bands = columns // rows
    per_band = [math.comb(rows, k) * jaccard ** k * (1 - jaccard) ** (rows - k) for k in range(rows + 1)]
    # dist[flag][count]: after the estimate's bands, `count` matching columns and whether a band matched fully
    dist = [np.zeros(columns + 1), np.zeros(columns + 1)]
    dist[0][0] = 1.0
    for _ in range(est_bands):
        new = [np.zeros(columns + 1), np.zeros(columns + 1)]
        for k, p in enumerate(per_band):
            full = k == rows
            new[1][k:] += p * dist[1][:columns + 1 - k]
            new[1 if full else 0][k:] += p * dist[0][:columns + 1 - k]
        dist = new
    rest = 1 - (1 - jaccard ** rows) ** (bands - est_bands)  # a later band matches
    found = dist[1][min_matches:].sum() + dist[0][min_matches:].sum() * rest
    return float(max(0.0, 1.0 - found))


_FMIX = {64: (33, 0xFF51AFD7ED558CCD, 33, 0xC4CEB9FE1A85EC53, 33), 32: (16, 0x85EBCA6B, 13, 0xC2B2AE35, 16)}


def _fmix(h: np.ndarray, width: int) -> np.ndarray:
    """MurmurHash3's finalizer (an avalanching bijection) on uint32 or uint64 arrays, as datasketch applies it."""
    kind = np.uint64 if width == 64 else np.uint32
    s1, m1, s2, m2, s3 = (kind(c) for c in _FMIX[width])
    h = h ^ (h >> s1)
    h = h * m1
    h = h ^ (h >> s2)
    h = h * m2
    return h ^ (h >> s3)


@functools.lru_cache(maxsize=262144)
def _token_hash(token: str) -> int:
    return int.from_bytes(hashlib.blake2b(token.encode("utf-8"), digest_size=8).digest(), "little")


def _shingle_hashes(tokens: Sequence[str]) -> list[int]:
    """64-bit token hashes with the occurrence folded in (the k-th "the" is its own shingle)."""
    seen: dict[str, int] = {}
    out = []
    for t in tokens:
        k = seen.get(t, 0)
        seen[t] = k + 1
        out.append(_token_hash(t) ^ (k * 0x9E3779B97F4A7C15 & 0xFFFFFFFFFFFFFFFF))
    return out


def shingle_hashes(texts: Sequence[str]) -> list[np.ndarray]:
    """Per text, the 32-bit hashes of its occurrence-tagged tokens (what its MinHash is taken over); one numpy
    pass for all texts."""
    raw = [_shingle_hashes(tokenize(t)) for t in texts]
    flat = np.fromiter((h for r in raw for h in r), dtype=np.uint64, count=sum(len(r) for r in raw))
    flat = (_fmix(flat, 64) & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    return np.split(flat, np.cumsum([len(r) for r in raw])[:-1]) if raw else []


@functools.lru_cache(maxsize=8)
def _permutations(num_perm: int) -> tuple[np.ndarray, np.ndarray]:
    from datasketch import MinHash  # pulls scipy (about 0.5 s): only when a pool is large enough for LSH

    a, b = MinHash(num_perm=num_perm, seed=MINHASH_SEED).permutations
    return np.asarray(a, np.uint32), np.asarray(b, np.uint32)


def minhashes(texts: Sequence[str], num_perm: int = LSH_PERMUTATIONS) -> np.ndarray:
    """One MinHash signature per text (rows of uint32), over its occurrence-tagged tokens: datasketch's MinHash
    ("affine32": fmix32, then a h + b mod 2^32 per permutation, datasketch's own a and b) computed for all texts
    at once with numpy. A text without tokens gets the empty signature (every value 2^32 - 1)."""
    a, b = _permutations(num_perm)
    out = np.full((len(texts), num_perm), 0xFFFFFFFF, dtype=np.uint32)
    hashes = shingle_hashes(texts)
    rows = [k for k, h in enumerate(hashes) if len(h)]
    if not rows:
        return out
    sizes = np.array([len(hashes[k]) for k in rows], dtype=np.int64)
    hv = _fmix(np.concatenate([hashes[k] for k in rows]), 32)
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    # a few thousand shingles at a time: the (shingles x permutations) block stays in cache (about 6 MB), which
    # here is 4 times faster than one large block
    budget = max(int(sizes.max()), (3 << 19) // num_perm)
    buf = np.empty((budget, num_perm), dtype=np.uint32)
    start = 0
    while start < len(rows):
        stop = int(np.searchsorted(offsets, offsets[start] + budget, "right")) - 1
        stop = max(stop, start + 1)
        lo, hi = offsets[start], offsets[stop]
        block = buf[:hi - lo]
        np.multiply(hv[lo:hi, None], a[None, :], out=block)  # wraps mod 2^32, as datasketch's uint32 arithmetic
        np.add(block, b[None, :], out=block)
        out[rows[start:stop]] = np.minimum.reduceat(block, offsets[start:stop] - lo, axis=0)
        start = stop
    return out


@functools.lru_cache(maxsize=8)
def _band_multipliers(bands: int, rows: int) -> np.ndarray:
    """Odd 64-bit multipliers, one per band row, fixed by the seed."""
    rng = np.random.default_rng(MINHASH_SEED)
    return rng.integers(1, 1 << 63, size=(bands, rows), dtype=np.uint64) * np.uint64(2) + np.uint64(1)


def band_keys(signatures: np.ndarray, bands: int = LSH_BANDS, rows: int = LSH_ROWS) -> np.ndarray:
    """One 32-bit key per band (texts x bands): the band's rows and its number mixed together; equal rows give
    equal keys, and unequal rows collide with chance about 2^-32 (an extra candidate, never a miss)."""
    sig = signatures[:, :bands * rows].reshape(len(signatures), bands, rows).astype(np.uint64)
    mixed = (sig * _band_multipliers(bands, rows)[None]).sum(axis=2, dtype=np.uint64)
    mixed += np.arange(bands, dtype=np.uint64)[None]
    return (_fmix(mixed, 64) >> np.uint64(32)).astype(np.uint32)


class _BandIndex:
    """The pool's band keys in sorted runs of doubling size (a log-structured merge), so adding one text costs
    amortised O(log n); no Python object per key (datasketch's MinHashLSH keeps a dict entry per band and text).
    Each run has a directory by the keys' top bits (about 4 keys a slot), so a lookup reads one slot of the run
    instead of binary-searching all of it: at 100,000 texts a binary search per band missed the cache at each of
    its 24 steps and cost more than everything else a child needs."""

    def __init__(self):
        self.runs: list[tuple[np.ndarray, np.ndarray, np.ndarray, int]] = []  # (keys, positions, slots, shift)

    @staticmethod
    def _run(keys: np.ndarray, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        order = np.argsort(keys, kind="stable")
        keys, positions = keys[order], positions[order]
        bits = max(1, min(28, int(len(keys)).bit_length() - 2))  # about 4 keys a slot
        shift = 32 - bits
        slots = np.searchsorted(keys, np.arange((1 << bits) + 1, dtype=np.uint64) << np.uint64(shift)).astype(np.int32)
        return keys, positions, slots, shift

    def add(self, keys: np.ndarray, positions: np.ndarray) -> None:
        self.runs.append(self._run(keys.ravel(), np.repeat(positions.astype(np.int32), keys.shape[1])))
        while len(self.runs) > 1 and len(self.runs[-2][0]) <= 2 * len(self.runs[-1][0]):
            (k2, p2, _, _), (k1, p1, _, _) = self.runs.pop(), self.runs.pop()
            self.runs.append(self._run(np.concatenate([k1, k2]), np.concatenate([p1, p2])))

    def query(self, keys: np.ndarray) -> np.ndarray:
        """Positions sharing at least one band key with `keys` (each once, ascending)."""
        found = []
        for run_keys, run_pos, slots, shift in self.runs:
            slot = keys >> np.uint32(shift)
            lo, hi = slots[slot], slots[slot + 1]
            lens = hi - lo
            total = int(lens.sum())
            if not total:
                continue
            # every key of the slots looked up, as one flat array (a frequent band value fills a slot of its own)
            at = np.repeat(lo - np.cumsum(lens) + lens, lens) + np.arange(total, dtype=np.int32)
            hit = run_keys[at] == np.repeat(keys, lens)
            if hit.any():
                found.append(run_pos[at[hit]])
        return np.unique(np.concatenate(found)) if found else np.zeros(0, np.int32)


class _Column:
    """A growable numpy array (capacity doubles), so adding texts one by one stays linear."""

    def __init__(self, dtype, width: int | None = None):
        self.data = np.zeros((16,) if width is None else (16, width), dtype=dtype)
        self.size = 0

    def extend(self, values: np.ndarray) -> None:
        need = self.size + len(values)
        if need > len(self.data):
            grown = np.zeros((max(need, 2 * len(self.data)),) + self.data.shape[1:], dtype=self.data.dtype)
            grown[:self.size] = self.data[:self.size]
            self.data = grown
        self.data[self.size:need] = values
        self.size = need

    def view(self) -> np.ndarray:
        return self.data[:self.size]


class RougeIndex:
    """A pool of texts that answers "the highest ROUGE-L of this text with the pool" without comparing it with
    every text: MinHash LSH proposes the texts that can be over the threshold, their Jaccard estimate and the
    length bound keep the few that still can, ROUGE-L decides. Each text may carry a group (a seed lineage):
    `max_rouge_l(text, exclude=group)` leaves that group out. `exact=True` compares with every text (the
    reference the LSH path is measured against). Through LSH a score under the threshold is only a lower
    bound (0.0 when no pool text is close)."""

    def __init__(self, texts: Sequence[str] = (), groups: Sequence[object] | None = None, *,
                 threshold: float = ROUGE_L_MAX, exact: bool | None = None,
                 bands: int = LSH_BANDS, rows: int = LSH_ROWS, estimate_columns: int = ESTIMATE_COLUMNS):
        self.threshold = threshold
        self.texts: list[str] = []
        self.groups: list[object] = []
        self.group_sizes: Counter = Counter()
        self.exact = (len(texts) < LSH_MIN_POOL) if exact is None else exact
        self.bands, self.rows = bands, rows
        self.num_perm = bands * rows
        self.estimate_columns = min(estimate_columns, self.num_perm)
        self.min_matches = estimate_min_matches(jaccard_floor(threshold), self.estimate_columns)
        if not self.exact:
            self._bands = _BandIndex()
            self._codes: dict[object, int] = {}
            self._group_code = _Column(np.int32)
            self._lengths = _Column(np.int32)
            # the low 8 bits of each value: a false match has chance 1/256, which only adds matches (a miss stays at
            # most `miss_probability`'s figure) and halves the bytes read per band hit against 16 bits
            self._estimate = _Column(np.uint8, self.estimate_columns)
        self.add_many(texts, groups)

    def __len__(self) -> int:
        return len(self.texts)

    def __iter__(self):
        return iter(self.texts)

    def signatures(self, texts: Sequence[str]) -> np.ndarray:
        return minhashes(texts, self.num_perm)

    def add_many(self, texts: Sequence[str], groups: Sequence[object] | None = None,
                 signatures: np.ndarray | None = None) -> None:
        texts = list(texts)
        groups = list(groups) if groups is not None else [None] * len(texts)
        start = len(self.texts)
        self.texts.extend(texts)
        self.groups.extend(groups)
        self.group_sizes.update(groups)
        if self.exact or not texts:
            return
        sig = self.signatures(texts) if signatures is None else np.asarray(signatures).reshape(len(texts), -1)
        lengths = np.array([len(tokenize(t)) for t in texts], dtype=np.int32)
        self._lengths.extend(lengths)
        self._group_code.extend(np.array([self._codes.setdefault(g, len(self._codes)) for g in groups], np.int32))
        self._estimate.extend((sig[:, :self.estimate_columns] & 0xFF).astype(np.uint8))
        has_tokens = np.nonzero(lengths)[0]  # a text without tokens is nobody's duplicate: not banded
        if len(has_tokens):
            self._bands.add(band_keys(sig[has_tokens], self.bands, self.rows), start + has_tokens)

    def add(self, text: str, group: object = None, minhash=None) -> None:
        self.add_many([text], [group], None if minhash is None else np.asarray(minhash)[None])

    def band_hits(self, text: str, minhash=None) -> np.ndarray:
        """Positions LSH returns for `text` (stage 1 only)."""
        if self.exact:
            return np.arange(len(self.texts))
        sig = self.signatures([text])[0] if minhash is None else np.asarray(minhash)
        return self._bands.query(band_keys(sig[None], self.bands, self.rows)[0])

    def candidates(self, text: str, minhash=None, *, exclude: object = None) -> list[int]:
        """Positions of the pool's texts ROUGE-L compares `text` with (all of them when exact; through LSH the
        band hits whose length and Jaccard estimate leave them able to pass the threshold)."""
        if self.exact:
            return [i for i, g in enumerate(self.groups) if exclude is None or g != exclude]
        n = len(tokenize(text))
        if not n or not self.texts:
            return []
        sig = self.signatures([text])[0] if minhash is None else np.asarray(minhash)
        pos = self.band_hits(text, sig)
        m = self._lengths.view()[pos]
        keep = 2 * np.minimum(n, m) / (n + m) > self.threshold  # LCS <= min(n, m) bounds F
        if exclude is not None and exclude in self._codes:
            keep &= self._group_code.view()[pos] != self._codes[exclude]
        pos = pos[keep]
        own = (sig[:self.estimate_columns] & 0xFF).astype(np.uint8)
        matches = (self._estimate.view()[pos] == own[None]).sum(axis=1)
        return pos[matches >= self.min_matches].tolist()

    def closest(self, text: str, *, exclude: object = None, minhash=None) -> tuple[float, int | None]:
        """(highest ROUGE-L of `text` with the pool, the position of that text) leaving group `exclude` out;
        (0.0, None) when nothing is comparable. Through LSH only candidates count: a pair it misses (rare: see
        `miss_probability`) reads as 0. Ties go to the earliest text, as in the exact check."""
        ta = tokenize(text)
        n = len(ta)
        if not n:
            return 0.0, None
        masks, best, at = _masks(ta), 0.0, None
        for i in self.candidates(text, minhash, exclude=exclude):
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
    hashes = index.signatures(texts) if not index.exact else [None] * len(texts)
    out = []
    for j, (t, m) in enumerate(zip(texts, hashes)):
        score, i = index.closest(t, minhash=m)
        if i is not None and score > threshold:
            out.append((j, i, score))
        index.add(t, minhash=m)
    return out
