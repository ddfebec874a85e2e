"""How well an embedder tells paraphrases from different questions, and the thresholds that belong to it.

Cosines crowd differently per model (multilingual-e5 puts unrelated questions near 0.8, MiniLM near
0.3), so a near-duplicate threshold is a property of the model, calibrated on labelled pairs:
- the corpus: `tests/data/embeddings/pairs.jsonl`, English and Korean, finance and general; each row
  `{a, b, label: "paraphrase"|"unrelated"|"evolved", language, domain}`; unrelated pairs are hard
  negatives (two different questions of the same domain), evolved pairs an instruction and an
  Evol-Instruct rewrite of it (constraints, depth, concrete cases added): new information, so not a
  near-duplicate either, and the closest kind of negative a run's map holds (a child beside its parent);
- the criterion (`FALSE_POSITIVE_RATE`): the near-duplicate threshold (seed sets, lint, grow) is the
  lowest cosine that marks at most 5% of the unrelated pairs, each language counted with equal weight;
  the novelty threshold, for filters that *drop* texts, at most 1%; the run-map threshold (marks on a
  run's map, where every child sits beside its parent) at most 5% of unrelated *and* evolved pairs.
  Each is stored rounded UP to 4 decimals (`round_up`), so the stored number meets the criterion too.
  Evolved rewrites are as close as paraphrases to every model measured, so on a run's map only the
  stricter cut keeps the mark meaning "nearly the same text". What share of paraphrases each catches,
  and of evolved pairs each marks, is recorded beside it. AUC and NN compare paraphrase with unrelated
  pairs only (NN among the texts of those pairs);
- shipped thresholds: `evolab/data/embedding_thresholds.json` keyed by model name; a user's own model
  is calibrated with `python -m evolab embed calibrate --model M --db D` into the store's meta.
  A model with neither falls back to the global 0.9, and says so (`ThresholdInfo.note`).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import pandas as pd

from evolab.embeddings.embed import E5_MODEL_NAME, Embedder, is_english_only
from evolab.embeddings.thresholds import (  # noqa: F401 (calibration's API)
    FALLBACK_THRESHOLD,
    THRESHOLDS_PATH,
    ThresholdInfo,
    from_store,
    save_to_store,
    shipped_thresholds,
    threshold_info,
)

if TYPE_CHECKING:  # pragma: no cover
    pass

CORPUS_PATH = Path(__file__).resolve().parents[2] / "tests" / "data" / "embeddings" / "pairs.jsonl"
FALSE_POSITIVE_RATE = {"near_duplicate": 0.05, "novelty": 0.01, "run_map": 0.05}
LABELS = ("paraphrase", "unrelated", "evolved")
NEGATIVE = ("unrelated", "evolved")
THRESHOLD_DECIMALS = 4  # thresholds are stored rounded UP to this many decimals (see round_up)


def _text_rows(path: Path, fields: tuple[str, ...]):
    """(line number, row) of a labelled JSONL file whose rows have non-empty text `fields`; a bad row raises a
    ValueError that names the line, so a user's own file is fixed, not silently half-read."""
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{n}: not JSON ({e.msg}).") from e
        if not isinstance(row, dict) or not all(isinstance(row.get(k), str) and row[k].strip() for k in fields):
            raise ValueError(f"{path}:{n}: each row needs text fields {', '.join(fields[:-1])} and {fields[-1]}.")
        yield n, row


def load_pairs(path: str | Path | None = None) -> pd.DataFrame:
    """Labelled pairs as a frame (a, b, label, language, domain). Bad rows raise a ValueError that
    names the line, so a user's own file is fixed, not silently half-read."""
    path = Path(path) if path else CORPUS_PATH
    if not path.exists():
        raise ValueError(f"No pairs file at {path}: give a JSONL file of {{a, b, label, language}} rows.")
    rows = []
    for n, row in _text_rows(path, ("a", "b", "label")):
        if row["label"] not in LABELS:
            raise ValueError(f"{path}:{n}: label must be one of {', '.join(LABELS)}, not {row['label']!r}.")
        rows.append({"a": row["a"], "b": row["b"], "label": row["label"],
                     "language": row.get("language") or "all", "domain": row.get("domain") or ""})
    df = pd.DataFrame(rows, columns=["a", "b", "label", "language", "domain"])
    for label in ("paraphrase", "unrelated"):
        if not (df["label"] == label).any():
            raise ValueError(f"{path}: calibration needs both paraphrase and unrelated pairs; found no {label} pair.")
    return df


def auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """Probability that a random paraphrase pair has a higher cosine than a random unrelated one (ties 1/2)."""
    positive, negative = np.asarray(positive, float), np.asarray(negative, float)
    if not len(positive) or not len(negative):
        return float("nan")
    diff = positive[:, None] - negative[None, :]
    return float(((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size)


def threshold_at_fpr(negative: np.ndarray, fpr: float, weights: np.ndarray | None = None) -> float:
    """The lowest cosine t with (weighted) share of `negative` >= t at most `fpr`: just above the
    negative cosine where that share would be exceeded."""
    negative = np.asarray(negative, float)
    w = np.ones(len(negative)) if weights is None else np.asarray(weights, float)
    w = w / w.sum()
    order = np.argsort(-negative)
    cum = np.cumsum(w[order])  # share of negatives at or above each cosine, highest first
    over = np.nonzero(cum > fpr + 1e-12)[0]
    if not len(over):
        return float(negative.min())
    return float(np.nextafter(np.float32(negative[order][over[0]]), np.float32(2.0)))


def share_marked(negative: np.ndarray, threshold: float, weights: np.ndarray | None = None) -> float:
    """(Weighted) share of `negative` cosines at or above `threshold`: what the criterion bounds."""
    negative = np.asarray(negative, float)
    w = np.ones(len(negative)) if weights is None else np.asarray(weights, float)
    return float(w[negative >= threshold].sum() / w.sum()) if len(negative) else 0.0


def round_up(threshold: float, negative: np.ndarray, fpr: float, weights: np.ndarray | None = None,
             decimals: int = THRESHOLD_DECIMALS) -> float:
    """`threshold` rounded UP to `decimals`, so the stored number never falls below the negative pair
    that set it (rounding to nearest took 0.89352 to 0.8935, under that pair, which was then marked).
    One step more while a negative sits exactly on the rounded value or the share marked at it
    exceeds `fpr`: the criterion holds, by construction, for the number that is written down."""
    step = 10.0 ** -decimals
    r = round(np.ceil(round(threshold / step, 6)) * step, decimals)
    while r < threshold:  # float error in the division above: never below the raw threshold
        r = round(r + step, decimals)
    negative = np.asarray(negative, float)
    while r < 1.0 and (np.any(negative == r) or share_marked(negative, r, weights) > fpr + 1e-12):
        r = round(r + step, decimals)
    return float(r)


@dataclass
class Measurement:
    """Per-language figures of one embedder on labelled pairs."""

    pairs: pd.DataFrame  # the pairs with a `cosine` column
    by_language: pd.DataFrame  # language, auc, nn_rate, paraphrase_mean, unrelated_mean, pairs


def measure(embedder: Embedder, pairs: pd.DataFrame) -> Measurement:
    """Cosines of every pair, AUC per language, and how often a text's nearest neighbour among all
    texts of its language is its paraphrase (both directions of every paraphrase pair)."""
    texts = list(dict.fromkeys(list(pairs["a"]) + list(pairs["b"])))
    vectors = embedder.encode(texts)
    index = {t: i for i, t in enumerate(texts)}
    a = np.array([index[t] for t in pairs["a"]])
    b = np.array([index[t] for t in pairs["b"]])
    out = pairs.copy()
    out["cosine"] = np.einsum("ij,ij->i", vectors[a], vectors[b]).astype(float)
    rows = []
    for lang, group in out.groupby("language", sort=True):
        para = group[group["label"] == "paraphrase"]
        unrel = group[group["label"] == "unrelated"]
        evolved = group[group["label"] == "evolved"]
        pool = group[group["label"] != "evolved"]  # NN as defined on paraphrase and unrelated texts
        own = sorted({index[t] for t in pool["a"]} | {index[t] for t in pool["b"]})
        sims = vectors[own] @ vectors[own].T
        np.fill_diagonal(sims, -np.inf)
        pos = {i: k for k, i in enumerate(own)}
        hits = []
        for x, y in zip(para["a"], para["b"]):
            i, j = pos[index[x]], pos[index[y]]
            hits += [int(sims[i].argmax() == j), int(sims[j].argmax() == i)]
        rows.append({"language": lang, "auc": auc(para["cosine"], unrel["cosine"]),
                     "nn_rate": float(np.mean(hits)) if hits else float("nan"),
                     "paraphrase_mean": float(para["cosine"].mean()), "unrelated_mean": float(unrel["cosine"].mean()),
                     "evolved_mean": float(evolved["cosine"].mean()) if len(evolved) else float("nan"),
                     "pairs": len(group)})
    return Measurement(out, pd.DataFrame(rows))


def calibrate(embedder: Embedder, pairs: pd.DataFrame | None = None, *, source: str | None = None,
              languages: Sequence[str] | None = None, measurement: Measurement | None = None) -> dict[str, Any]:
    """Thresholds for `embedder` from labelled pairs (the shipped corpus by default), with what they catch.
    `languages`: only pairs of these (an English-only model is calibrated on English: its Korean
    cosines are noise that would only push its threshold up). `measurement`: `measure(embedder, pairs)`
    when already done (embedding is the slow part)."""
    if pairs is None:
        pairs, source = load_pairs(), source or "tests/data/embeddings/pairs.jsonl"
    if languages:
        pairs = pairs[pairs["language"].isin(list(languages))]
        if pairs.empty or len(set(pairs["label"])) < 2:
            raise ValueError(f"No paraphrase and unrelated pairs in languages {list(languages)}.")
    m = measurement if measurement is not None else measure(embedder, pairs)
    entry: dict[str, Any] = {"criterion": "lowest cosine marking at most this share of unrelated pairs (run_map: "
                                          "of unrelated and evolved pairs), languages weighted equally",
                             "false_positive_rate": dict(FALSE_POSITIVE_RATE), "corpus": source or "user pairs",
                             "languages": {}}
    for kind, labels in (("near_duplicate", ("unrelated",)), ("novelty", ("unrelated",)), ("run_map", NEGATIVE)):
        neg = m.pairs[m.pairs["label"].isin(labels)]
        # each language weighs the same, whatever its number of pairs
        weights = 1.0 / neg.groupby("language")["cosine"].transform("size").to_numpy()
        cosines = neg["cosine"].to_numpy()
        raw = threshold_at_fpr(cosines, FALSE_POSITIVE_RATE[kind], weights)
        entry[kind] = round_up(raw, cosines, FALSE_POSITIVE_RATE[kind], weights)
    for row in m.by_language.to_dict("records"):
        g = m.pairs[m.pairs["language"] == row["language"]]
        para, neg = g[g["label"] == "paraphrase"]["cosine"], g[g["label"] == "unrelated"]["cosine"]
        evolved = g[g["label"] == "evolved"]["cosine"]
        entry["languages"][row["language"]] = {
            "auc": round(row["auc"], 4), "nn_rate": round(row["nn_rate"], 4),
            "paraphrase_mean": round(row["paraphrase_mean"], 4), "unrelated_mean": round(row["unrelated_mean"], 4),
            "evolved_mean": None if not len(evolved) else round(float(evolved.mean()), 4),
            **{f"{kind}_recall": round(float((para >= entry[kind]).mean()), 4) for kind in FALSE_POSITIVE_RATE},
            **{f"{kind}_fpr": round(float((neg >= entry[kind]).mean()), 4) for kind in FALSE_POSITIVE_RATE},
            **{f"{kind}_evolved_marked": None if not len(evolved) else round(float((evolved >= entry[kind]).mean()), 4)
               for kind in FALSE_POSITIVE_RATE}}
    return entry


def english_only_warning(languages: Sequence[str], embedder_name: str) -> str | None:
    """What the Diversity page says when texts that are not English meet an English-only model (only
    when the user forced one: the default picks the multilingual model for them); None otherwise."""
    others = sorted({lang for lang in languages if isinstance(lang, str) and lang and lang != "en"})
    if not others or not is_english_only(embedder_name):
        return None
    return (f"This run has {'Korean' if others == ['ko'] else ', '.join(others)} instructions, and the embedding "
            f"model {embedder_name} is English-only: on Korean paraphrases it is near chance (AUC 0.47 on evolab's "
            f"corpus), so these distances and near-duplicate marks are noise. Unset EVOLAB_EMBED_MODEL, or set it "
            f"to {E5_MODEL_NAME}, and reload.")


# -- the off_topic rule's thresholds (evolab/engine/drift_rules.py) -------------------------------------------------
# A child has left its parent's subject when the cosine of (parent, child) falls under a cut calibrated per model,
# per language (the parent's: the run's) and per kind of operation: an in-depth rewrite keeps the parent's subject,
# an in-breadth one its domain. The pairs (tests/data/topic/tuning.jsonl) hold, for each parent, a real in-depth
# rewrite, a new instruction of the same domain, and an unrelated instruction; tests/data/topic/heldout.jsonl,
# written with it before any calibration, holds other parents (and, for Korean ones, an English off-topic child and
# the English translation of the rewrite) and measures what the cuts do on texts they were not set on.
# The criterion: no real rewrite of the tuning set flagged (the rule eliminates, so a false positive costs a good
# child), and the cut halfway between the lowest rewrite and the highest unrelated pair under it, stored rounded
# DOWN to 4 decimals so the stored number flags no tuning rewrite either.
TOPIC_PATH = Path(__file__).resolve().parents[2] / "tests" / "data" / "topic" / "tuning.jsonl"
TOPIC_HELDOUT_PATH = TOPIC_PATH.with_name("heldout.jsonl")
TOPIC_LABELS = ("rewrite", "off_topic")
TOPIC_KINDS = {"in-depth": "in_depth", "in-breadth": "in_breadth"}


def load_topic_pairs(path: str | Path | None = None) -> pd.DataFrame:
    """Labelled (parent, child) pairs: parent, child, label (rewrite|off_topic), kind (in-depth|in-breadth|any: an
    off-topic child is off topic for both), language (the parent's), child_language. A bad row raises a
    ValueError naming its line."""
    path = Path(path) if path else TOPIC_PATH
    if not path.exists():
        raise ValueError(f"No pairs file at {path}: give a JSONL file of {{parent, child, label, kind, language}} rows.")
    rows = []
    for n, row in _text_rows(path, ("parent", "child", "label", "kind", "language")):
        if row["label"] not in TOPIC_LABELS or row["kind"] not in (*TOPIC_KINDS, "any"):
            raise ValueError(f"{path}:{n}: label must be one of {', '.join(TOPIC_LABELS)} and kind one of "
                             f"{', '.join([*TOPIC_KINDS, 'any'])}.")
        rows.append({**{k: row[k] for k in ("parent", "child", "label", "kind", "language")},
                     "child_language": row.get("child_language") or row["language"]})
    return pd.DataFrame(rows, columns=["parent", "child", "label", "kind", "language", "child_language"])


def measure_topic(embedder: Embedder, pairs: pd.DataFrame) -> pd.DataFrame:
    """The pairs with the cosine of parent and child under `embedder`."""
    texts = list(dict.fromkeys(list(pairs["parent"]) + list(pairs["child"])))
    vectors = embedder.encode(texts)
    index = {t: i for i, t in enumerate(texts)}
    out = pairs.copy()
    out["cosine"] = [float(vectors[index[a]] @ vectors[index[b]]) for a, b in zip(pairs["parent"], pairs["child"])]
    return out


def off_topic_cut(rewrites: Sequence[float], unrelated: Sequence[float]) -> float:
    """The cosine under which a child is off topic: halfway between the lowest real rewrite and the highest
    unrelated pair below it (the lowest rewrite when none is below), rounded down to 4 decimals."""
    low = float(min(rewrites))
    below = [float(u) for u in unrelated if u < low]
    cut = (low + max(below)) / 2 if below else low
    step = 10.0 ** -THRESHOLD_DECIMALS
    return round(float(np.floor(round(cut / step, 6)) * step), THRESHOLD_DECIMALS)


def off_topic_figures(cuts: dict[str, dict[str, float]], measured: pd.DataFrame) -> list[dict[str, Any]]:
    """Per parent language, child language and kind: rewrites and how many the cut flags (false positives),
    unrelated children and how many it flags (recall)."""
    rows = []
    for (lang, child_lang), group in measured.groupby(["language", "child_language"], sort=True):
        for kind, key in TOPIC_KINDS.items():
            cut = cuts.get(key, {}).get(lang)
            if cut is None:
                continue
            rewrites = group[(group["label"] == "rewrite") & (group["kind"] == kind)]["cosine"]
            unrelated = group[group["label"] == "off_topic"]["cosine"]
            rows.append({"language": lang, "child_language": child_lang, "kind": kind, "cut": cut,
                         "rewrites": len(rewrites), "false_positives": int((rewrites < cut).sum()),
                         "off_topic": len(unrelated), "caught": int((unrelated < cut).sum())})
    return rows


def calibrate_off_topic(embedder: Embedder, pairs: pd.DataFrame | None = None, *, source: str | None = None,
                        languages: Sequence[str] | None = None,
                        measured: pd.DataFrame | None = None) -> dict[str, Any]:
    """The off_topic cuts for `embedder`, per kind and language, from the tuning pairs (same-language children
    only: a drifted language is language_drift's to judge), with their figures on those pairs."""
    if pairs is None:
        pairs, source = load_topic_pairs(), source or "tests/data/topic/tuning.jsonl"
    pairs = pairs[pairs["language"] == pairs["child_language"]]
    if languages:
        pairs = pairs[pairs["language"].isin(list(languages))]
    m = measured if measured is not None else measure_topic(embedder, pairs)
    cuts: dict[str, dict[str, float]] = {key: {} for key in TOPIC_KINDS.values()}
    for lang, group in m.groupby("language", sort=True):
        unrelated = group[group["label"] == "off_topic"]["cosine"]
        for kind, key in TOPIC_KINDS.items():
            rewrites = group[(group["label"] == "rewrite") & (group["kind"] == kind)]["cosine"]
            if len(rewrites) and len(unrelated):
                cuts[key][lang] = off_topic_cut(rewrites, unrelated)
    if not any(cuts.values()):
        raise ValueError("No rewrite and off-topic pairs to calibrate the off_topic rule on.")
    return {"criterion": "per parent language and kind: halfway between the lowest real rewrite and the highest "
                         "unrelated child under it (no tuning rewrite flagged), rounded down",
            "corpus": source or "user pairs", **cuts, "tuning": off_topic_figures(cuts, m)}
