"""Tables of a run as pandas DataFrames: what the figures, the report, the app and notebooks show.

Two kinds of functions:
- readers take a `Store` and a run id: `nodes_frame`, `calls_frame`, `run_overview`, `embedding_map`;
- pure functions take a DataFrame and return one: `round_operation_frame`, `round_frame`,
  `deltas_frame`, `pairs_frame`, `eliminations_frame`, `cost_frame`, `mean_ci`.

Means come with 95% confidence intervals (Student's t; NaN bounds below two values).
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Callable, Iterable, Sequence

import numpy as np
import pandas as pd

from evolab.embeddings import embed, novelty
from evolab.engine import scoring
from evolab.engine.eliminator import all_rule_ids
from evolab.schema import STATUSES
from evolab.store import NODE_FIELDS, Store
from evolab.text import complexity

if TYPE_CHECKING:  # pragma: no cover
    from evolab.embeddings.embed import Embedder

LENGTH_METRICS = ("instruction_length",)


def score_metrics() -> list[str]:
    """A column per metric of every registered scorer (evolab.engine.scoring), plugins included."""
    return scoring.score_metrics()


def delta_metrics() -> list[str]:
    """The metrics whose child - parent change the figures show: each scorer's drift metrics."""
    return [m for s in scoring.SCORERS.values() for m in s.drift_metrics()]


def drift_metrics() -> list[str]:
    """What drift and the round x operation table summarise with a mean and a CI."""
    return delta_metrics() + list(LENGTH_METRICS)


# -- statistics --------------------------------------------------------------------------------------
def _t_quantile(confidence: float, df: int) -> float:
    try:
        from scipy import stats  # heavy (about 0.3 s): only when an interval is drawn

        return float(stats.t.ppf(0.5 + confidence / 2, df))
    except ImportError:  # pragma: no cover - scipy comes with scikit-learn
        return 1.959963984540054


# A mean of values on a scale (a scorer's `scale`: difficulty 1-10, quality 0-5) stays on it, and so must its
# interval: a t-interval over two difficulty scores of 1 and 10 would run from -12 to 25.
MIN_N_FOR_CI = 3  # with fewer values the points are drawn without whiskers


def metric_scale(metric: str) -> tuple[float, float] | None:
    """The (low, high) ends of a metric's scale, or None when it has none (complexity, lengths)."""
    scorer = scoring.scorer_of(metric)
    return scorer.scale if scorer is not None and metric == type(scorer).name else None


def delta_scale(metric: str) -> tuple[float, float] | None:
    """The scale of a child - parent change of `metric` (-9 to 9 for difficulty)."""
    scale = metric_scale(metric)
    return None if scale is None else (scale[0] - scale[1], scale[1] - scale[0])


def mean_ci(values: Iterable[float], confidence: float = 0.95,
            scale: tuple[float, float] | None = None) -> tuple[float, float, float, int]:
    """(mean, low, high, n) of the non-missing values.

    Fewer than MIN_N_FOR_CI values: no interval (low and high are NaN). Without a scale the interval is
    mean +- t * sd / sqrt(n). On a bounded `scale` it is a Wilson score interval for the mean rescaled to
    [0, 1], with the effective sample size p(1-p) / se^2 (so the observed spread, not a Bernoulli one,
    sets its width) and t in place of z: it never leaves the scale, it leans away from the end the mean
    is near, and away from the ends it is the t-interval."""
    arr = pd.to_numeric(pd.Series(list(values), dtype=float), errors="coerce").dropna().to_numpy(dtype=float)
    n = len(arr)
    if n == 0:
        return math.nan, math.nan, math.nan, 0
    mean = float(arr.mean())
    if n < MIN_N_FOR_CI:
        return mean, math.nan, math.nan, n
    t = _t_quantile(confidence, n - 1)
    se = float(arr.std(ddof=1)) / math.sqrt(n)
    if scale is None:
        return mean, mean - t * se, mean + t * se, n
    low, high = scale
    width = high - low
    p = min(max((mean - low) / width, 0.0), 1.0)
    se_p = se / width
    if se_p == 0 or p in (0.0, 1.0):  # every value the same (at an end of the scale, or anywhere)
        return mean, mean, mean, n
    n_eff = p * (1 - p) / se_p ** 2
    denom = 1 + t * t / n_eff
    centre = (p + t * t / (2 * n_eff)) / denom
    half = t * math.sqrt(se_p ** 2 + t * t / (4 * n_eff * n_eff)) / denom
    return mean, low + width * max(centre - half, 0.0), low + width * min(centre + half, 1.0), n


# -- nodes ---------------------------------------------------------------------------------------------
def _empty_nodes_frame() -> pd.DataFrame:
    cols = NODE_FIELDS + list(score_metrics()) + ["instruction_length", "response_length", "seed_instruction"]
    return pd.DataFrame({c: pd.Series(dtype=float if c in score_metrics() or c.endswith("_length") else object)
                         for c in cols})


def nodes_frame(store: Store, run_id: str | Sequence[str], *, fill_complexity: bool = True) -> pd.DataFrame:
    """One row per node: every Node field, one column per score metric (difficulty, quality, cx_*,
    plus any other metric stored; the mean when several judges scored it), instruction_length and
    response_length (characters) and seed_instruction (the instruction of the node's root).

    `run_id` may be a list (rows of several runs, told apart by `run_id`). `fill_complexity` computes
    the cx_* columns for nodes the store has none for (runs made before the pipeline stored them).
    """
    run_ids = [run_id] if isinstance(run_id, str) else list(run_id)
    nodes, scores = [], []
    for rid in run_ids:
        nodes.extend(n.to_dict() for n in store.nodes(rid))
        scores.extend((s.node_id, s.metric, s.value) for s in store.scores(rid))
    if not nodes:
        return _empty_nodes_frame()
    df = pd.DataFrame(nodes, columns=NODE_FIELDS)
    if scores:
        sc = pd.DataFrame(scores, columns=["node_id", "metric", "value"])
        sc["value"] = pd.to_numeric(sc["value"], errors="coerce")
        wide = sc.pivot_table(index="node_id", columns="metric", values="value", aggfunc="mean", dropna=False)
        wide.columns = [str(c) for c in wide.columns]
        df = df.join(wide, on="id")
    for m in score_metrics():
        if m not in df:
            df[m] = np.nan
        df[m] = pd.to_numeric(df[m], errors="coerce").astype(float)
    if fill_complexity:
        missing = df["cx_index"].isna() & df["instruction"].notna()
        if missing.any():
            measured = [complexity.measure(i or "", x or "", lang or "auto")
                        for i, x, lang in zip(df.loc[missing, "instruction"], df.loc[missing, "input"],
                                              df.loc[missing, "language"])]
            for key in ("tokens", "words", "constraints", "questions", "reasoning_cues", "input_chars", "index"):
                df.loc[missing, f"cx_{key}"] = [m[key] for m in measured]
    df["input"] = df["input"].fillna("")
    df["instruction_length"] = df["instruction"].fillna("").str.len().astype(float)
    df["response_length"] = df["response"].map(lambda r: float(len(r)) if isinstance(r, str) else np.nan)
    roots = df.set_index("id")["instruction"]
    df["seed_instruction"] = df["root_id"].map(roots)
    return df.reset_index(drop=True)


# -- round x operation ------------------------------------------------------------------------------------
def group_stats(nodes: pd.DataFrame, by: Sequence[str], metrics: Sequence[str] | None = None,
                confidence: float = 0.95) -> pd.DataFrame:
    """Per group: n, a count per status, a count per elimination rule (`rule_<id>`), and for each
    metric `<m>_mean`, `<m>_lo`, `<m>_hi`, `<m>_n` (mean and confidence interval of the nodes that
    have a value)."""
    metrics = drift_metrics() if metrics is None else list(metrics)
    by = list(by)
    status_cols = list(STATUSES)
    rule_cols = [f"rule_{r}" for r in all_rule_ids()]
    metric_cols = [f"{m}_{s}" for m in metrics for s in ("mean", "lo", "hi", "n")]
    cols = by + ["n"] + status_cols + ["eliminated_share"] + rule_cols + metric_cols
    if nodes is None or nodes.empty:
        return pd.DataFrame(columns=cols)
    rows = []
    for key, g in nodes.groupby(by, sort=True, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        row: dict = dict(zip(by, key))
        row["n"] = len(g)
        counts = g["status"].value_counts()
        for s in status_cols:
            row[s] = int(counts.get(s, 0))
        produced = len(g) - row["seed"]
        row["eliminated_share"] = row["eliminated"] / produced if produced else math.nan
        rules = g["rule"].value_counts() if "rule" in g else pd.Series(dtype=int)
        for r in all_rule_ids():
            row[f"rule_{r}"] = int(rules.get(r, 0))
        for m in metrics:
            vals = g[m] if m in g else pd.Series(dtype=float)
            mean, lo, hi, n = mean_ci(vals, confidence, metric_scale(m))
            row.update({f"{m}_mean": mean, f"{m}_lo": lo, f"{m}_hi": hi, f"{m}_n": n})
        rows.append(row)
    return pd.DataFrame(rows, columns=cols)


def round_operation_frame(nodes: pd.DataFrame, *, include_all: bool = False,
                          metrics: Sequence[str] | None = None,
                          statuses: Iterable[str] | None = None) -> pd.DataFrame:
    """Per round x operation: counts (n, per status, per rule), eliminated_share, and the mean with a
    95% CI of difficulty, quality, cx_index and instruction_length. `include_all` adds an
    operation "all" row per round (what `drift_figure` draws as the overall line). `statuses`
    restricts the rows first (e.g. ("seed", "kept") for the pool that survives)."""
    nodes = _filter_status(nodes, statuses)
    frame = group_stats(nodes, ["round", "operation"], metrics)
    if include_all and not frame.empty:
        overall = group_stats(nodes, ["round"], metrics)
        overall.insert(1, "operation", "all")
        frame = pd.concat([frame, overall], ignore_index=True).sort_values(["round", "operation"], kind="stable")
    return frame.reset_index(drop=True)


def round_frame(nodes: pd.DataFrame, *, metrics: Sequence[str] | None = None,
                statuses: Iterable[str] | None = None) -> pd.DataFrame:
    """The same numbers per round only."""
    return group_stats(_filter_status(nodes, statuses), ["round"], metrics)


def _filter_status(nodes: pd.DataFrame, statuses: Iterable[str] | None) -> pd.DataFrame:
    if statuses is None or nodes is None or nodes.empty:
        return nodes
    return nodes[nodes["status"].isin(list(statuses))]


# -- parent -> child -------------------------------------------------------------------------------------
def pairs_frame(nodes: pd.DataFrame, metrics: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per child with a parent in the frame: child id, operation, round, status, rule and for
    each metric the parent's value, the child's and `<m>_delta` (child - parent)."""
    metrics = delta_metrics() if metrics is None else list(metrics)
    cols = ["id", "parent_id", "operation", "round", "status", "rule"]
    out_cols = cols + [f"{m}_{s}" for m in metrics for s in ("parent", "child", "delta")]
    if nodes is None or nodes.empty:
        return pd.DataFrame(columns=out_cols)
    children = nodes[nodes["parent_id"].notna()]
    parents = nodes.set_index("id")
    children = children[children["parent_id"].isin(parents.index)]
    out = children[cols].copy()
    for m in metrics:
        child = children[m].astype(float) if m in children else pd.Series(np.nan, index=children.index)
        parent = children["parent_id"].map(parents[m]).astype(float) if m in parents else child * np.nan
        out[f"{m}_parent"], out[f"{m}_child"] = parent.to_numpy(), child.to_numpy()
        out[f"{m}_delta"] = (child - parent).to_numpy()
    return out.reset_index(drop=True)[out_cols]


def deltas_frame(nodes: pd.DataFrame, metrics: Sequence[str] | None = None, *,
                 statuses: Iterable[str] | None = None, confidence: float = 0.95) -> pd.DataFrame:
    """Does an operation really make instructions harder? Per operation and metric: the mean change
    from parent to child with its 95% CI (long format: operation, metric, n, mean, lo, hi, share_up).
    `statuses` restricts the children (e.g. ("kept",)); by default every child with both values counts."""
    metrics = delta_metrics() if metrics is None else list(metrics)
    cols = ["operation", "metric", "n", "mean", "lo", "hi", "share_up"]
    pairs = pairs_frame(nodes, metrics)
    if statuses is not None:
        pairs = pairs[pairs["status"].isin(list(statuses))]
    if pairs.empty:
        return pd.DataFrame(columns=cols)
    rows = []
    for op, g in pairs.groupby("operation", sort=True):
        for m in metrics:
            d = g[f"{m}_delta"].dropna()
            mean, lo, hi, n = mean_ci(d, confidence, delta_scale(m))
            rows.append({"operation": op, "metric": m, "n": n, "mean": mean, "lo": lo, "hi": hi,
                         "share_up": float((d > 0).mean()) if n else math.nan})
    return pd.DataFrame(rows, columns=cols)


# -- eliminations -----------------------------------------------------------------------------------------
def eliminations_frame(nodes: pd.DataFrame, by: str = "round") -> pd.DataFrame:
    """Eliminated and failed nodes per `by` ("round" or "operation") and rule, long format:
    by, rule, count, rate (count / nodes produced in that group, seeds not counted)."""
    cols = [by, "rule", "count", "rate"]
    if nodes is None or nodes.empty:
        return pd.DataFrame(columns=cols)
    produced = nodes[nodes["status"] != "seed"].groupby(by).size()
    gone = nodes[nodes["status"].isin(["eliminated", "failed"])].copy()
    if gone.empty:
        return pd.DataFrame(columns=cols)
    gone["rule"] = gone["rule"].fillna("unknown")
    counts = gone.groupby([by, "rule"]).size().rename("count").reset_index()
    counts["rate"] = counts.apply(lambda r: r["count"] / produced.get(r[by], 0) if produced.get(r[by], 0)
                                  else math.nan, axis=1)
    rule_order = {r: i for i, r in enumerate(all_rule_ids())}
    counts["_o"] = counts["rule"].map(lambda r: rule_order.get(r, len(all_rule_ids())))
    counts = counts.sort_values([by, "_o", "rule"]).drop(columns="_o")
    return counts.reset_index(drop=True)[cols]


def eliminations_table(nodes: pd.DataFrame, by: str = "round") -> pd.DataFrame:
    """The same counts as a table: one row per `by` value, one column per rule."""
    long = eliminations_frame(nodes, by)
    if long.empty:
        return pd.DataFrame()
    return long.pivot_table(index=by, columns="rule", values="count", aggfunc="sum", fill_value=0)


# -- calls and cost ---------------------------------------------------------------------------------------
CALL_COLUMNS = ["purpose", "model", "prompt_tokens", "completion_tokens", "latency_s", "cost_usd", "price_known",
                "cached", "error", "run_id", "node_id", "request_hash", "created_at", "round"]


def calls_frame(store: Store, run_id: str | Sequence[str], nodes: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per LLM call with the round of its node (NaN for calls not tied to a node)."""
    run_ids = [run_id] if isinstance(run_id, str) else list(run_id)
    rows = [vars(c) for rid in run_ids for c in store.calls(rid)]
    if not rows:
        return pd.DataFrame(columns=CALL_COLUMNS)
    df = pd.DataFrame(rows)
    if nodes is None:
        nodes = nodes_frame(store, run_ids, fill_complexity=False)
    return add_call_rounds(df, nodes)


def add_call_rounds(calls: pd.DataFrame, nodes: pd.DataFrame) -> pd.DataFrame:
    """Join each call's node round (NaN when the call has no node or the node is unknown)."""
    calls = calls.copy()
    rounds = nodes.set_index("id")["round"] if not nodes.empty else pd.Series(dtype=float)
    calls["round"] = calls["node_id"].map(rounds).astype(float)
    return calls


def cost_frame(calls: pd.DataFrame) -> pd.DataFrame:
    """Per purpose and round (NaN round: calls without a node): calls, cached, errors,
    prompt_tokens, completion_tokens, tokens, cost_usd, latency_s (mean of uncached calls)."""
    cols = ["purpose", "round", "calls", "cached", "errors", "prompt_tokens", "completion_tokens", "tokens",
            "cost_usd", "latency_s"]
    if calls is None or calls.empty:
        return pd.DataFrame(columns=cols)
    df = calls.copy()
    if "round" not in df:
        df["round"] = np.nan
    df["cached"] = df["cached"].astype(bool)
    df["has_error"] = df["error"].notna()
    df["fresh_latency"] = df["latency_s"].where(~df["cached"])
    g = df.groupby(["purpose", "round"], dropna=False, sort=True)
    out = pd.DataFrame({
        "calls": g.size(),
        "cached": g["cached"].sum().astype(int),
        "errors": g["has_error"].sum().astype(int),
        "prompt_tokens": g["prompt_tokens"].sum().astype(int),
        "completion_tokens": g["completion_tokens"].sum().astype(int),
        "cost_usd": g["cost_usd"].sum().astype(float),
        "latency_s": g["fresh_latency"].mean(),
    }).reset_index()
    out["tokens"] = out["prompt_tokens"] + out["completion_tokens"]
    return out[cols]


# -- overview ----------------------------------------------------------------------------------------------
def run_overview(store: Store, run_id: str) -> dict:
    """Summary numbers of a run: name, status, config (model, endpoint, rounds, fanout, random seed,
    language), seeds, nodes by status, eliminations by rule, calls, tokens, cost, duration, and the
    kept pool per round."""
    run = store.get_run(run_id)
    if run is None:
        raise KeyError(f"No run {run_id!r} in {store.path}: list them with `python -m evolab runs`.")
    cfg = run["config"]
    s = store.run_summary(run_id)
    kept_per_round = store.kept_per_round(run_id)
    duration = (s["last_call_at"] - s["first_call_at"]) if s["first_call_at"] and s["last_call_at"] else None
    return {
        "run_id": run_id, "name": run["name"], "status": run["status"], "error": run["error"],
        "created_at": run["created_at"], "seed_set": run["seed_set"],
        "model": cfg.model, "base_url": cfg.base_url or "embedded local model", "rounds": cfg.rounds,
        "fanout": cfg.fanout, "random_seed": cfg.random_seed, "language": cfg.language,
        "concurrency": cfg.concurrency, "budget_usd": cfg.budget_usd,
        "seeds": len(run["seeds"]), "nodes": s["nodes"], "by_status": s["by_status"], "by_rule": s["by_rule"],
        "kept_per_round": kept_per_round, "max_round": s["max_round"],
        "calls": s["calls"], "cached_calls": s["cached_calls"], "failed_calls": s["failed_calls"],
        "prompt_tokens": s["prompt_tokens"], "completion_tokens": s["completion_tokens"],
        "tokens": s["prompt_tokens"] + s["completion_tokens"], "cost_usd": s["cost_usd"],
        "price_known": s["price_known"], "duration_s": duration,
    }


# -- embeddings -----------------------------------------------------------------------------------------
def embedding_map(store: Store, run_id: str | Sequence[str], embedder: "Embedder | None" = None, *,
                  nodes: pd.DataFrame | None = None, n_neighbors: int = 15, min_dist: float = 0.1,
                  n_epochs: int | None = 200, threshold: float | None = None,
                  progress: "Callable[[str, int, int], None] | None" = None) -> tuple[pd.DataFrame, np.ndarray]:
    """(frame, vectors): every node of the run(s) with x, y from one UMAP fit across all of them, and
    max_cosine, nearest_id, near_duplicate, duplicate_of (cosine >= threshold); vectors in row order.
    `embedder` None: EVOLAB_EMBED_* or the packaged model for the nodes' languages; `threshold` None:
    the embedder's own for run maps (`embed.run_map_threshold`). frame.attrs has "embedder" and "threshold".

    Vectors come from the store's cache when present (only new texts are embedded); the map is cached
    by content in memory and in `<db>.umap/`.
    """

    if nodes is None:
        nodes = nodes_frame(store, run_id)
    if nodes.empty:
        out = nodes.copy()
        for c in ("x", "y", "max_cosine"):
            out[c] = pd.Series(dtype=float)
        out["near_duplicate"] = pd.Series(dtype=bool)
        out["nearest_id"] = out["duplicate_of"] = pd.Series(dtype=object)
        return out, np.zeros((0, 0), dtype=np.float32)
    if embedder is None:
        embedder = embed.embedder_from_env(nodes["instruction"])
    if threshold is None:
        threshold = embed.run_map_threshold(embedder, store)
    vectors = embed.embed_nodes(nodes, embedder, store, progress=progress)
    settings = dict(n_neighbors=n_neighbors, min_dist=min_dist, n_epochs=n_epochs, cache_dir=embed.umap_cache_dir(store))
    if progress is not None and not embed.umap_is_cached(vectors, **settings):
        progress("fitting", 0, len(vectors))
    coords = embed.umap_coords(vectors, **settings)
    out = novelty.mark_duplicates(nodes, vectors, threshold)
    out["x"], out["y"] = coords[:, 0].astype(float), coords[:, 1].astype(float)
    out.attrs.update(embedder=getattr(embedder, "name", None), threshold=float(threshold))
    return out, vectors



def map_embedder(nodes: pd.DataFrame) -> "Embedder":
    """The embedder for a run's map: the same for the Diversity page, the report and the warm-up after
    a run, so each finds the vectors and the map the others cached."""

    return embed.embedder_from_env(embed.node_texts(nodes) if nodes is not None and len(nodes) else None)


def map_work(store: Store, run_id: str, nodes: pd.DataFrame | None = None,
             embedder: "Embedder | None" = None) -> dict[str, int | bool]:
    """What opening the run's map still has to do: {"to_embed": texts without a cached vector,
    "to_fit": whether the UMAP map must be fitted}. Cheap: reads caches, computes nothing."""

    nodes = nodes_frame(store, run_id) if nodes is None else nodes
    if nodes.empty:
        return {"to_embed": 0, "to_fit": False}
    embedder = embedder or map_embedder(nodes)
    texts = embed.node_texts(nodes)
    to_embed = embed.count_unembedded(texts, embedder, store)
    if to_embed:
        return {"to_embed": to_embed, "to_fit": True}
    vectors = embed.embed_texts(texts, embedder, store)  # all cached: read, not computed
    return {"to_embed": 0, "to_fit": not embed.umap_is_cached(vectors, cache_dir=embed.umap_cache_dir(store))}


def warm_map(store: Store, run_id: str, progress: "Callable[[str, int, int], None] | None" = None) -> dict:
    """Embed the run's instructions and fit its map now, into the store's caches, so the Diversity page
    (and the report) open without waiting. Returns what it did: nodes, embedded, fitted, embedder."""
    nodes = nodes_frame(store, run_id)
    embedder = map_embedder(nodes)
    work = map_work(store, run_id, nodes, embedder)
    if work["to_embed"] or work["to_fit"]:
        embedding_map(store, run_id, embedder, nodes=nodes, progress=progress)
    return {"nodes": len(nodes), "embedded": work["to_embed"], "fitted": bool(work["to_fit"]),
            "embedder": embedder.name if len(nodes) else None}


def kept_share(nodes: pd.DataFrame) -> float:
    """Share of produced (non-seed) nodes that were kept."""
    produced = nodes[nodes["status"] != "seed"] if not nodes.empty else nodes
    return float((produced["status"] == "kept").mean()) if len(produced) else math.nan
