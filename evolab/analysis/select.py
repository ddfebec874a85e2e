"""Choose what to train on: Deita's score-first, diversity-aware selection over a run's kept nodes.

Deita (Liu et al. 2024, "What Makes Good Data for Alignment?", github.com/hkust-nlp/deita) scores every
example, sorts by the score, and takes examples in that order, skipping any whose embedding is too close to one
already taken, until it has N. distilabel's `DeitaFiltering` step does the same (score = instruction score x
response score, keep when the cosine distance to the nearest chosen example is over a threshold). Here:

- the score is a product of the node's score metrics, stated and switchable (`difficulty x quality` by default;
  `cx_index`, any scorer's metric); nodes missing a factor are skipped as `no_score`;
- checked answers and review verdicts filter (and minimum scores), every skip recorded with its reason;
- "too close" is cosine >= the embedder's calibrated threshold (evolab/embeddings/thresholds.py; by default its
  `run_map` one: nearly the same text, not an evolved rewrite of it), or a number you give;
- an optional cap per seed lineage (`root_id`) or per skill keeps one topic from taking the set;
- optionally, ROUGE-L over 0.7 with a chosen text skips too (MinHash LSH proposes, ROUGE-L confirms).

`select` returns a `Selection` (a frame of every candidate: its rank, score, chosen or the reason it was
skipped, the chosen node it was too close to); `record_selection` stores it; `write_selection` writes the
chosen nodes in any export format (evolab/export/formats.py).
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from evolab.analysis.frames import map_embedder, nodes_frame, score_metrics
from evolab.embeddings import embed
from evolab.embeddings.novelty import LSH_MIN_POOL, ROUGE_L_MAX, RougeIndex, minhashes
from evolab.engine.checking import UNCHECKED, check_statuses, parse_checked
from evolab.export import formats
from evolab.schema import KEPT, SEED
from evolab.store import Store

DEFAULT_SCORE = ("difficulty", "quality")
CAP_BY = {"lineage": "root_id", "skill": "skill"}
THRESHOLD_KINDS = ("run_map", "novelty", "near_duplicate")  # the embedder's calibrated thresholds
REVIEW_FILTERS = ("any", "not_discarded", "kept")
# why a candidate was not taken, in the order the checks run
REASONS = ("filtered", "no_score", "near_duplicate", "rouge_duplicate", "cap", "not_reached")
BLOCK = 512  # candidates compared with the chosen set in one matrix product


class SelectionError(ValueError):
    """A selection parameter that cannot work (an unknown metric, a cap without a size...)."""


@dataclass
class SelectionParams:
    n: int
    score: tuple[str, ...] = DEFAULT_SCORE  # the sort score: the product of these metrics
    threshold: float | None = None  # cosine at or above which two nodes are too close; None: the embedder's
    threshold_kind: str = "run_map"  # which calibrated threshold None means
    cap_by: str | None = None  # "lineage" or "skill"
    cap: int | None = None  # at most this many chosen per lineage / skill
    min_scores: dict[str, float] = field(default_factory=dict)
    checked: tuple[str, ...] = ()  # keep only these answer-check statuses (empty: any)
    reviews: str = "not_discarded"  # any | not_discarded (drop what a reviewer discarded) | kept (reviewed keep)
    include_seeds: bool = False  # the seeds (round 0) are candidates too
    rouge: bool = False  # also skip ROUGE-L > 0.7 with a chosen node

    def check(self) -> None:
        if self.n < 1:
            raise SelectionError("--n must be at least 1.")
        if not self.score:
            raise SelectionError("--score needs at least one metric, e.g. difficulty*quality.")
        if self.threshold is not None and not -1.0 <= self.threshold <= 1.0:
            raise SelectionError(f"--threshold is a cosine between -1 and 1, not {self.threshold}.")
        if self.threshold_kind not in THRESHOLD_KINDS:
            raise SelectionError(f"unknown threshold kind {self.threshold_kind!r}; choose from {', '.join(THRESHOLD_KINDS)}.")
        if (self.cap_by is None) != (self.cap is None):
            raise SelectionError("--cap-by and --cap go together, e.g. --cap-by lineage --cap 3.")
        if self.cap_by is not None and self.cap_by not in CAP_BY:
            raise SelectionError(f"--cap-by is one of {', '.join(CAP_BY)}, not {self.cap_by!r}.")
        if self.cap is not None and self.cap < 1:
            raise SelectionError("--cap must be at least 1.")
        if self.reviews not in REVIEW_FILTERS:
            raise SelectionError(f"--reviews is one of {', '.join(REVIEW_FILTERS)}, not {self.reviews!r}.")
        if self.checked:
            parse_checked(list(self.checked))  # raises ValueError naming the unknown status

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["score"], d["checked"] = list(self.score), list(self.checked)
        return d

    @property
    def score_label(self) -> str:
        return " x ".join(self.score)


def parse_score(text: str) -> tuple[str, ...]:
    """"difficulty*quality" (or "difficulty x quality", "difficulty,quality") -> ("difficulty", "quality")."""
    parts = [p.strip() for p in text.replace(" x ", "*").replace(",", "*").split("*")]
    if not all(parts):
        raise SelectionError(f"--score {text!r}: metrics joined by *, e.g. difficulty*quality or cx_index.")
    return tuple(parts)


@dataclass
class Selection:
    params: SelectionParams
    run_ids: list[str]
    embedder: str | None
    threshold: float
    frame: pd.DataFrame  # every candidate: id, run_id, round, operation, skill, root_id, score, rank, chosen, reason
    selection_id: int | None = None

    @property
    def chosen(self) -> pd.DataFrame:
        return self.frame[self.frame["chosen"]].sort_values("rank")

    @property
    def chosen_ids(self) -> list[str]:
        return list(self.chosen["id"])

    def summary(self) -> str:
        counts = self.frame.loc[~self.frame["chosen"], "reason"].value_counts()
        skipped = ", ".join(f"{counts[r]} {r}" for r in REASONS if r in counts) or "none"
        cap = f", at most {self.params.cap} per {self.params.cap_by}" if self.params.cap_by else ""
        return (f"chose {len(self.chosen)} of {self.params.n} asked from {len(self.frame)} candidates "
                f"(score {self.params.score_label}; too close at cosine >= {self.threshold:.3f}, "
                f"{self.embedder}{cap}); skipped: {skipped}")


# -- the greedy core --------------------------------------------------------------------------------------
def deita_greedy(scores: np.ndarray, vectors: np.ndarray, n: int, threshold: float, *,
                 groups: Sequence[object] | None = None, cap: int | None = None,
                 texts: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """Deita's selection on arrays. Candidates are taken in descending score (ties: input order); one is
    skipped when its cosine with a node already taken is >= threshold (`near_duplicate`), when its group
    already has `cap` taken (`cap`), or (with `texts`) when its ROUGE-L with a taken text is over 0.7
    (`rouge_duplicate`); after n are taken the rest are `not_reached`. Returns arrays in input order:
    chosen (bool), rank (position in score order), reason (None when chosen), other (index of the taken
    node it was too close to, -1), similarity (that cosine or ROUGE-L, NaN)."""
    m = len(scores)
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    v = embed.normalise_rows(np.asarray(vectors, dtype=np.float32)) if m else np.zeros((0, 1), np.float32)
    chosen = np.zeros(m, dtype=bool)
    rank = np.empty(m, dtype=np.int64)
    rank[order] = np.arange(m)
    reason = np.full(m, None, dtype=object)
    other = np.full(m, -1, dtype=np.int64)
    similarity = np.full(m, np.nan)
    taken = np.empty((min(n, m), v.shape[1] if m else 1), dtype=np.float32)  # the chosen vectors, in order
    taken_idx: list[int] = []
    per_group: dict[object, int] = {}
    rouge = RougeIndex(exact=n < LSH_MIN_POOL) if texts is not None else None
    for start in range(0, m, BLOCK):
        block = order[start:start + BLOCK]
        if len(taken_idx) >= n:
            reason[block] = "not_reached"
            continue
        k0 = len(taken_idx)
        sims = v[block] @ taken[:k0].T if k0 else np.zeros((len(block), 0), np.float32)
        for b, i in enumerate(block):
            if len(taken_idx) >= n:
                reason[i] = "not_reached"
                continue
            k = len(taken_idx)
            row = sims[b]
            if k > k0:  # taken earlier in this block
                row = np.concatenate([row, taken[k0:k] @ v[i]])
            if k:
                j = int(np.argmax(row))
                if row[j] >= threshold:
                    reason[i], other[i], similarity[i] = "near_duplicate", taken_idx[j], float(row[j])
                    continue
            group = groups[i] if groups is not None else None
            if cap is not None and per_group.get(group, 0) >= cap:
                reason[i] = "cap"
                continue
            if rouge is not None:
                mh = None if rouge.exact else minhashes([texts[i]])[0]
                score, at = rouge.closest(texts[i], minhash=mh)
                if at is not None and score > ROUGE_L_MAX:
                    reason[i], other[i], similarity[i] = "rouge_duplicate", taken_idx[at], score
                    continue
                rouge.add(texts[i], minhash=mh)
            chosen[i] = True
            taken[k] = v[i]
            taken_idx.append(int(i))
            per_group[group] = per_group.get(group, 0) + 1
    return {"chosen": chosen, "rank": rank, "reason": reason, "other": other, "similarity": similarity}


# -- over the store ---------------------------------------------------------------------------------------
def candidate_frame(store: Store, run_ids: Sequence[str], params: SelectionParams,
                    nodes: pd.DataFrame | None = None) -> pd.DataFrame:
    """The runs' kept nodes (and seeds with an answer, with include_seeds), with `score` (the product of the
    score metrics) and `filtered` (why a filter dropped it, None when it stays)."""
    nodes = nodes_frame(store, list(run_ids)) if nodes is None else nodes
    statuses = (KEPT, SEED) if params.include_seeds else (KEPT,)
    df = nodes[nodes["status"].isin(statuses) & nodes["response"].notna()].copy().reset_index(drop=True)
    unknown = [m for m in (*params.score, *params.min_scores) if m not in nodes.columns]
    if unknown:
        known = [m for m in score_metrics() if m in nodes.columns]
        raise SelectionError(f"no score named {', '.join(unknown)} in these runs; choose from {', '.join(known)}.")
    score = np.ones(len(df))
    for metric in params.score:
        score = score * pd.to_numeric(df[metric], errors="coerce").to_numpy(dtype=float)
    df["score"] = score
    filtered = pd.Series([None] * len(df), dtype=object)
    for metric, low in params.min_scores.items():
        values = pd.to_numeric(df[metric], errors="coerce")
        filtered[(filtered.isna()) & ~(values >= low)] = f"{metric} under {low:g}"
    if params.checked:
        statuses_by_node: dict[str, str] = {}
        for rid in run_ids:
            statuses_by_node.update(check_statuses(store, rid))
        check = df["id"].map(lambda i: statuses_by_node.get(i, UNCHECKED))
        filtered[filtered.isna() & ~check.isin(list(params.checked))] = "answer check " + check
    if params.reviews != "any":
        verdicts = {r["node_id"]: r["verdict"] for r in store.reviews(list(run_ids))}
        verdict = df["id"].map(verdicts).astype(object)
        drop = verdict.eq("discard") if params.reviews == "not_discarded" else ~verdict.eq("keep")
        filtered[filtered.isna() & drop.to_numpy()] = "review: " + verdict.fillna("not reviewed")
    df["filtered"] = filtered.to_numpy()
    return df


def select(store: Store, run_ids: str | Sequence[str], params: SelectionParams, *, embedder: Any = None,
           vectors: np.ndarray | None = None, nodes: pd.DataFrame | None = None,
           progress: Any = None) -> Selection:
    """Deita's selection over the runs' kept nodes (see the module's docstring). `vectors` (one per row of
    `nodes`, e.g. the Diversity map's) skip embedding; else the nodes are embedded with `embedder` (default:
    the run map's embedder, so the vectors cached for the map are reused)."""
    params.check()
    run_ids = [run_ids] if isinstance(run_ids, str) else list(run_ids)
    for rid in run_ids:
        if store.get_run(rid) is None:
            raise SelectionError(f"no run {rid!r} in {store.path}.")
    all_nodes = nodes_frame(store, run_ids) if nodes is None else nodes
    cand = candidate_frame(store, run_ids, params, all_nodes)
    if vectors is None:
        embedder = embedder or map_embedder(all_nodes)
    if params.threshold is not None:
        threshold = float(params.threshold)
    elif embedder is None:
        raise SelectionError("give a threshold with precomputed vectors (the embedder's is unknown).")
    else:
        threshold = float(getattr(embed.threshold_info(embedder, store), params.threshold_kind))
    eligible = cand["filtered"].isna() & cand["score"].notna()
    pool = cand[eligible].reset_index(drop=True)
    if vectors is None:
        vecs = embed.embed_nodes(pool, embedder, store, progress=progress) if len(pool) else np.zeros((0, 1))
    else:
        if len(vectors) != len(all_nodes):
            raise SelectionError(f"{len(all_nodes)} nodes but {len(vectors)} vectors.")
        row_of = {i: k for k, i in enumerate(all_nodes["id"])}
        vecs = np.asarray(vectors)[[row_of[i] for i in pool["id"]]] if len(pool) else np.zeros((0, 1))
    # ties broken by id, so the same store gives the same selection
    pool = pool.sort_values(["score", "id"], ascending=[False, True], kind="stable")
    vecs = vecs[pool.index.to_numpy()] if len(pool) else vecs
    pool = pool.reset_index(drop=True)
    groups = list(pool[CAP_BY[params.cap_by]].fillna("")) if params.cap_by else None
    texts = embed.node_texts(pool) if params.rouge else None
    out = deita_greedy(pool["score"].to_numpy(float), vecs, params.n, threshold, groups=groups, cap=params.cap,
                       texts=texts)
    pool["rank"], pool["chosen"], pool["reason"] = out["rank"], out["chosen"], out["reason"]
    pool["other_id"] = [pool["id"].iat[o] if o >= 0 else None for o in out["other"]]
    pool["similarity"] = out["similarity"]
    rest = cand[~eligible].copy()
    rest["rank"], rest["chosen"] = pd.NA, False
    rest["reason"] = np.where(rest["filtered"].notna(), "filtered", "no_score")
    rest["other_id"], rest["similarity"] = None, np.nan
    rest["reason_detail"] = rest["filtered"]
    pool["reason_detail"] = None
    frame = pd.concat([pool, rest], ignore_index=True) if len(rest) else pool
    frame["chosen"] = frame["chosen"].astype(bool)
    name = getattr(embedder, "name", None) if embedder is not None else None
    return Selection(params, run_ids, name, threshold, frame)


def record_selection(store: Store, selection: Selection, *, out_path: str | None = None,
                     out_format: str | None = None) -> int:
    """Store the selection (parameters, embedder, threshold) and every candidate (rank, score, chosen or why
    skipped, the node it was too close to); returns its id."""
    f = selection.frame
    items = []
    for r in f.itertuples(index=False):
        why = None if r.chosen else (f"{r.reason}: {r.reason_detail}" if isinstance(r.reason_detail, str)
                                     else r.reason)
        items.append((r.id, None if pd.isna(r.rank) else int(r.rank),
                      None if pd.isna(r.score) else float(r.score), int(bool(r.chosen)), why, r.other_id,
                      None if pd.isna(r.similarity) else float(r.similarity)))
    row = {"run_ids": selection.run_ids, "params": selection.params.to_dict(), "embedder": selection.embedder,
           "threshold": selection.threshold, "n_requested": selection.params.n, "n_chosen": len(selection.chosen),
           "out_path": str(out_path) if out_path else None, "out_format": out_format, "created_at": time.time()}
    selection.selection_id = store.add_selection(row, items)
    return selection.selection_id


def write_selection(store: Store, selection: Selection, fmt: str, out: str | Path) -> int:
    """Write the chosen nodes, best first, in an export format; returns how many."""
    if fmt not in formats.FORMATS:
        raise SelectionError(f"unknown format {fmt!r}; choose from {', '.join(formats.FORMATS)}.")
    records = chosen_records(store, selection.run_ids, selection.chosen_ids, fmt)
    Path(out).write_text(formats.dumps(records, fmt), encoding="utf-8")
    return len(records)


def chosen_records(store: Store, run_ids: Sequence[str], chosen_ids: Sequence[str], fmt: str) -> list[dict]:
    """The export records of these nodes of these runs, in the order of `chosen_ids` (best first)."""
    wanted = set(chosen_ids)
    by_id: dict[str, dict] = {}
    for rid in run_ids:
        nodes = [n for n in store.nodes(rid) if n.id in wanted]
        by_id.update(zip((n.id for n in nodes), formats.to_records(store, rid, nodes, fmt)))
    return [by_id[i] for i in chosen_ids if i in by_id]


def stored_selection(store: Store, selection_id: int, nodes: pd.DataFrame | None = None) -> tuple[dict, pd.DataFrame]:
    """(the selection's row, a frame of its candidates as `Selection.frame` has them: id, rank, score, chosen,
    reason, reason_detail, other_id, similarity, with round, operation, skill, root_id from the nodes)."""
    [row] = [s for s in store.selections() if s["id"] == selection_id] or [None]
    if row is None:
        raise SelectionError(f"no selection {selection_id} in {store.path}.")
    items = pd.DataFrame(store.selection_items(selection_id),
                         columns=["node_id", "rank", "score", "chosen", "reason", "other_id", "similarity"])
    items = items.rename(columns={"node_id": "id"})
    split = items["reason"].fillna("").str.partition(": ")
    items["reason"] = split[0].replace("", None)
    items["reason_detail"] = split[2].replace("", None)
    nodes = nodes_frame(store, row["run_ids"]) if nodes is None else nodes
    cols = ["id", "run_id", "round", "operation", "skill", "root_id", "instruction"]
    frame = items.merge(nodes[cols], on="id", how="left")
    frame["chosen"] = frame["chosen"].astype(bool)
    return row, frame


# -- what the Export page and the Diversity map show ------------------------------------------------------
def outcome_table(frame: pd.DataFrame, by: str) -> pd.DataFrame:
    """Per value of `by` (round, operation, skill): candidates, taken, and skipped per reason."""
    if frame.empty:
        return pd.DataFrame(columns=[by, "candidates", "taken", *REASONS])
    f = frame.assign(outcome=np.where(frame["chosen"], "taken", frame["reason"]))
    table = pd.crosstab(f[by].fillna("(none)"), f["outcome"])
    for col in ("taken", *REASONS):
        if col not in table:
            table[col] = 0
    table.insert(0, "candidates", table[["taken", *REASONS]].sum(axis=1))
    return table[["candidates", "taken", *REASONS]].reset_index()


def score_distribution(frame: pd.DataFrame) -> pd.DataFrame:
    """Long frame (score, set) of the candidates' scores before ("all candidates") and after ("chosen")."""
    scored = frame[frame["score"].notna()]
    return pd.concat([pd.DataFrame({"score": scored["score"], "set": "all candidates"}),
                      pd.DataFrame({"score": scored.loc[scored["chosen"], "score"], "set": "chosen"})],
                     ignore_index=True)


def selection_marks(store: Store, run_id: str, selection_id: int | None = None) -> dict[str, bool] | None:
    """node id -> chosen for a stored selection of this run (the latest when no id): the Diversity map's marks."""
    found = [s for s in store.selections(run_id) if selection_id is None or s["id"] == selection_id]
    if not found:
        return None
    return {r["node_id"]: r["chosen"] for r in store.selection_items(found[0]["id"])}
