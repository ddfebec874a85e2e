"""The near-duplicate thresholds that belong to each embedding model, and where each comes from: a user's
calibration kept in the store, the file shipped with evolab, or the global fallback."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from evolab.store import Store

THRESHOLDS_PATH = Path(__file__).resolve().parents[1] / "data" / "embedding_thresholds.json"
# Near-duplicate at cosine >= this only for a model nobody calibrated: thresholds belong to the model, so
# callers pass embed.near_duplicate_threshold(embedder) (e5: 0.894, MiniLM: 0.498; evolab/embeddings/calibration.py).
COSINE_DUPLICATE = 0.9
FALLBACK_THRESHOLD = COSINE_DUPLICATE  # the global default (0.9) for a model nobody calibrated
META_PREFIX = "embedding_thresholds:"  # store meta key of a user-calibrated model


def shipped_thresholds() -> dict[str, dict]:
    """The calibrated thresholds shipped with evolab, keyed by model name."""
    try:
        return json.loads(THRESHOLDS_PATH.read_text(encoding="utf-8")).get("models", {})
    except (OSError, ValueError):
        return {}


def save_to_store(store: Store, model_name: str, entry: dict) -> None:
    store.set_meta(META_PREFIX + model_name, json.dumps(entry, ensure_ascii=False))


def from_store(store: Store | None, model_name: str) -> dict | None:
    if store is None:
        return None
    raw = store.get_meta(META_PREFIX + model_name)
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None


@dataclass(frozen=True)
class AlignmentRule:
    """A language's near-duplicate rule with the word alignment beside the cosine (`wordalign`): a pair is a
    near-duplicate when cosine - weight * alignment >= cut, never below `floor`, always at `certain` or above
    (one-particle edits share every word; no tuning pair asking another thing reached it). It was fitted on
    one-sentence instructions: a pair with a text of more than `max_words` words keeps the cosine cut (an input
    table's words would align with nothing and make any two such texts look reworded)."""

    weight: float
    cut: float
    floor: float
    certain: float
    max_words: int = 0  # 0: any length

    def applies(self, words_a: int, words_b: int) -> bool:
        return not self.max_words or max(words_a, words_b) <= self.max_words

    def score(self, cosine: float, alignment: float) -> float:
        return cosine - self.weight * alignment

    def flags(self, cosine: float, alignment: float) -> bool:
        return cosine >= self.certain or (cosine >= self.floor and self.score(cosine, alignment) >= self.cut)

    @classmethod
    def from_entry(cls, entry: object) -> "AlignmentRule | None":
        if not isinstance(entry, dict):
            return None
        try:
            return cls(float(entry["weight"]), float(entry["cut"]), float(entry["floor"]), float(entry["certain"]),
                       int(entry.get("max_words", 0)))
        except (KeyError, TypeError, ValueError):
            return None


@dataclass(frozen=True)
class ThresholdInfo:
    """The thresholds in force for one model and where they came from (shown beside maps and marks)."""

    model: str
    near_duplicate: float  # seed sets, lint, grow: paraphrase against different questions
    novelty: float  # filters that drop texts
    source: str  # "shipped", "calibrated" (store meta) or "fallback"
    run_map: float = FALLBACK_THRESHOLD  # marks on a run's map: also above Evol-Instruct rewrites of a text
    # seed lint's threshold for a pair whose two texts are in one language, where the model's cosines crowd
    # differently (e5 on short Korean finance instructions that share a frame: "near_duplicate_by_language")
    by_language: tuple[tuple[str, float], ...] = ()
    # where a language also has a word-alignment rule (e5 on Korean), seed lint decides its pairs by that rule
    alignment_rules: tuple[tuple[str, AlignmentRule], ...] = ()

    def alignment_rule_for(self, language_a: str, language_b: str) -> AlignmentRule | None:
        """The word-alignment rule of a pair in these languages: the language's own when both texts are in it."""
        return dict(self.alignment_rules).get(language_a) if language_a == language_b else None

    def near_duplicate_for(self, language_a: str, language_b: str) -> float:
        """The near-duplicate threshold of a pair in these languages: the language's own when both texts are in
        it and it has one, else `near_duplicate`."""
        if language_a == language_b:
            return dict(self.by_language).get(language_a, self.near_duplicate)
        return self.near_duplicate

    @property
    def note(self) -> str:
        if self.source == "fallback":
            return (f"{self.model} has no calibrated threshold: near-duplicates use the global default cosine "
                    f"≥ {self.near_duplicate:.2f}, which may mark too much or too little for this model. "
                    f"Calibrate it: python -m evolab embed calibrate --model {self.model} --db <your.db>")
        return ""

    @property
    def caption(self) -> str:
        """Under a run's map: which model and which (run-map) threshold made the marks."""
        where = {"shipped": "calibrated on evolab's paraphrase corpus", "calibrated": "calibrated by you",
                 "fallback": "global default, not calibrated"}[self.source]
        return f"embedder {self.model}; near-duplicate at cosine ≥ {self.run_map:.3f} ({where})"


def off_topic_thresholds(model_name: str) -> dict | None:
    """The off-topic cosines calibrated for this model (`calibration.calibrate_off_topic`): {"in_depth":
    {language: cosine}, "in_breadth": {...}, ...}, or None when nobody calibrated it."""
    entry = (shipped_thresholds().get(model_name) or {}).get("off_topic")
    return entry if isinstance(entry, dict) and isinstance(entry.get("in_depth"), dict) else None


def threshold_info(model_name: str, store: Store | None = None) -> ThresholdInfo:
    """User calibration (store meta) first, then the shipped file, then the global fallback."""
    for source, entry in (("calibrated", from_store(store, model_name)),
                          ("shipped", shipped_thresholds().get(model_name))):
        if entry and isinstance(entry.get("near_duplicate"), (int, float)):
            by_language = entry.get("near_duplicate_by_language") or {}
            return ThresholdInfo(model_name, float(entry["near_duplicate"]),
                                 float(entry.get("novelty", entry["near_duplicate"])), source,
                                 float(entry.get("run_map", entry["near_duplicate"])),
                                 tuple(sorted((str(k), float(v.get("near_duplicate") if isinstance(v, dict) else v))
                                              for k, v in by_language.items())),
                                 tuple(sorted((str(k), rule) for k, v in by_language.items() if isinstance(v, dict)
                                              and (rule := AlignmentRule.from_entry(v.get("word_alignment"))))))
    return ThresholdInfo(model_name, FALLBACK_THRESHOLD, FALLBACK_THRESHOLD, "fallback")
