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
    if lcs == 0:
        return 0.0
    precision, recall = lcs / m, lcs / n
    return 2 * precision * recall / (precision + recall)


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
    score below the best so far are skipped.
    """
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
