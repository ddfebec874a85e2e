"""What each evolution operation did in a run: tries, kept share, eliminations by rule, the change it made to
difficulty and complexity, and what a kept child cost; and the weights of an adaptive run over time.

Pure functions over `analysis.nodes_frame` / `analysis.calls_frame` frames (and the store's `op_decisions`
rows), so the Drift page, the HTML report, `python -m evolab runs --by-operation` and notebooks show the same
numbers.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import pandas as pd

from evolab.analysis import frames as analysis
from evolab.engine.adaptive import PRIOR
from evolab.engine.eliminator import all_rule_ids
from evolab.engine.operations import operation_names

if TYPE_CHECKING:  # pragma: no cover
    from evolab.store import Store

SPLITS = ("round", "language", "skill")  # what an operation's numbers can be broken down by
DELTA_METRICS = ("difficulty", "cx_index")


def _op_sort_key(op: str) -> tuple[int, str]:
    return (operation_names().index(op) if op in operation_names() else len(operation_names()), op)


def operation_stats(nodes: pd.DataFrame, calls: pd.DataFrame | None = None, by: Sequence[str] = ("round",),
                    confidence: float = 0.95) -> pd.DataFrame:
    """One row per operation (and per value of each `by` column: round, language, skill) over the evolved
    children (seeds are not tried by an operation):

    - `tried` children, `kept`, `eliminated`, `failed`, `kept_share` = kept / tried;
    - `rule_<id>`: children eliminated or failed by each rule (every rule in `schema.RULES`, zeros included);
    - `<m>_delta_mean/_lo/_hi/_n` for difficulty and cx_index: mean child - parent change with its confidence
      interval (`analysis.mean_ci` on the change's scale), over the children that have both values (the cascade
      stops before scoring an eliminated child, so mostly the kept ones);
    - `calls`, `tokens` (prompt + completion) and `cost_usd` of the calls made for these children (evolve,
      respond, judges and scores; cache hits cost nothing and are left out), and each per kept child
      (`calls_per_kept`, `tokens_per_kept`, `cost_per_kept`; NaN when nothing was kept).
    """
    by = [b for b in by if b and b != "operation"]
    for b in by:
        if b not in SPLITS:
            raise ValueError(f"Cannot split operations by {b!r}; choose from {', '.join(SPLITS)}.")
    keys = ["operation", *by]
    rule_cols = [f"rule_{r}" for r in all_rule_ids()]
    delta_cols = [f"{m}_delta_{s}" for m in DELTA_METRICS for s in ("mean", "lo", "hi", "n")]
    cols = keys + ["tried", "kept", "eliminated", "failed", "kept_share"] + rule_cols + delta_cols + [
        "calls", "tokens", "cost_usd", "calls_per_kept", "tokens_per_kept", "cost_per_kept"]
    if nodes is None or nodes.empty:
        return pd.DataFrame(columns=cols)
    children = nodes[(nodes["status"] != "seed") & nodes["parent_id"].notna()].copy()
    if children.empty:
        return pd.DataFrame(columns=cols)
    for b in by:  # a missing skill is a group of its own, named so
        children[b] = children[b].where(children[b].notna(), "(none)") if b != "round" else children[b].astype(int)
    # each child's changes and spend as columns, joined once rather than looked up per group
    pairs = analysis.pairs_frame(nodes, DELTA_METRICS).set_index("id")
    for m in DELTA_METRICS:
        children[f"_{m}_delta"] = children["id"].map(pairs[f"{m}_delta"]) if len(pairs) else float("nan")
    spend = _spend_per_node(calls)
    for col in ("calls", "tokens", "cost_usd"):
        children[f"_{col}"] = children["id"].map(spend[col]).fillna(0.0) if len(spend) else 0.0
    rows: list[dict[str, Any]] = []
    for key, g in children.groupby(keys, sort=False, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        row: dict[str, Any] = dict(zip(keys, key))
        status = g["status"].value_counts()
        row["tried"] = len(g)
        for s in ("kept", "eliminated", "failed"):
            row[s] = int(status.get(s, 0))
        row["kept_share"] = row["kept"] / row["tried"]
        rules = g["rule"].value_counts()
        for r in all_rule_ids():
            row[f"rule_{r}"] = int(rules.get(r, 0))
        for m in DELTA_METRICS:
            mean, lo, hi, n = analysis.mean_ci(g[f"_{m}_delta"], confidence, analysis.delta_scale(m))
            row.update({f"{m}_delta_mean": mean, f"{m}_delta_lo": lo, f"{m}_delta_hi": hi, f"{m}_delta_n": n})
        row["calls"], row["tokens"] = int(g["_calls"].sum()), int(g["_tokens"].sum())
        row["cost_usd"] = float(g["_cost_usd"].sum())
        for what in ("calls", "tokens", "cost"):
            total = row["cost_usd"] if what == "cost" else row[what]
            row[f"{what}_per_kept"] = total / row["kept"] if row["kept"] else math.nan
        rows.append(row)
    out = pd.DataFrame(rows, columns=cols)
    order = out["operation"].map(_op_sort_key)
    out = out.assign(_o=order).sort_values(["_o", *by], kind="stable").drop(columns="_o")
    return out.reset_index(drop=True)


def _spend_per_node(calls: pd.DataFrame | None) -> pd.DataFrame:
    """calls, tokens, cost_usd of the uncached calls per node id."""
    if calls is None or calls.empty:
        return pd.DataFrame(columns=["calls", "tokens", "cost_usd"])
    fresh = calls[calls["node_id"].notna() & ~calls["cached"].astype(bool)].copy()
    fresh["tokens"] = fresh["prompt_tokens"].astype(int) + fresh["completion_tokens"].astype(int)
    g = fresh.groupby("node_id")
    return pd.DataFrame({"calls": g.size(), "tokens": g["tokens"].sum(), "cost_usd": g["cost_usd"].sum()})


def format_table(frame: pd.DataFrame) -> str:
    """The table `runs --by-operation` prints (`summary_table` as text)."""
    if frame.empty:
        return "  no evolved children yet"
    return summary_table(frame).to_string(index=False)


def summary_table(frame: pd.DataFrame) -> pd.DataFrame:
    """`operation_stats` for people: counts, kept share, the rules that fired, changes with their 95% CIs, and
    spend per kept child, as text columns (the CLI, the Drift page, the report)."""
    if frame.empty:
        return pd.DataFrame()
    keys = [c for c in ["operation", *SPLITS] if c in frame]
    fired = [c for c in frame.columns if c.startswith("rule_") and frame[c].sum() > 0]

    def change(r: pd.Series, m: str) -> str:
        mean, lo, hi = r[f"{m}_delta_mean"], r[f"{m}_delta_lo"], r[f"{m}_delta_hi"]
        if mean != mean:
            return "-"
        return f"{mean:+.2f}" + (f" [{lo:+.2f}, {hi:+.2f}]" if lo == lo else f" (n={int(r[f'{m}_delta_n'])})")

    def per(v: float, digits: int) -> str:
        return "-" if v != v else f"{v:,.{digits}f}"

    table = pd.DataFrame({
        **{k: frame[k].astype(str) for k in keys},
        "tried": frame["tried"], "kept": frame["kept"],
        "kept %": (frame["kept_share"] * 100).map(lambda v: f"{v:.0f}%"),
        **{c.removeprefix("rule_"): frame[c] for c in fired},
        "difficulty change [95% CI]": frame.apply(lambda r: change(r, "difficulty"), axis=1),
        "complexity change [95% CI]": frame.apply(lambda r: change(r, "cx_index"), axis=1),
        "calls/kept": frame["calls_per_kept"].map(lambda v: per(v, 1)),
        "tokens/kept": frame["tokens_per_kept"].map(lambda v: per(v, 0)),
        "$/kept": frame["cost_per_kept"].map(lambda v: "-" if v != v else f"{v:.5f}"),
    })
    return table


# -- adaptive runs --------------------------------------------------------------------------------------
def weights_frame(decisions: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """Long format, one row per decision and operation: seq (decision index), created_at, language, operation,
    alpha, beta, mean (the posterior mean alpha / (alpha + beta) the decision saw), draw, chosen, and the
    decision's reward (NaN until its step finished, and for failed steps)."""
    cols = ["seq", "created_at", "language", "operation", "alpha", "beta", "mean", "draw", "chosen", "reward"]
    rows = []
    for d in decisions:
        for op, (a, b) in d["posterior"].items():
            rows.append({"seq": d["seq"], "created_at": d["created_at"], "language": d["language"], "operation": op,
                         "alpha": a, "beta": b, "mean": a / (a + b), "draw": d["draws"].get(op, math.nan),
                         "chosen": op == d["operation"],
                         "reward": math.nan if d["reward"] is None else float(d["reward"])})
    return pd.DataFrame(rows, columns=cols)


def run_operation_table(store: "Store", run_id: str, by: Sequence[str] = ("round",)) -> str:
    """`python -m evolab runs --by-operation`: a heading, the table over all rounds, then split by `by`."""
    nodes = analysis.nodes_frame(store, run_id)
    calls = analysis.calls_frame(store, run_id, nodes)
    run = store.get_run(run_id)
    parts = [f"{run_id}  {run['name']}  [{run['status']}]: what each operation did"
             + (" (adaptive sampling)" if run["config"].operation_sampling == "adaptive" else ""),
             format_table(operation_stats(nodes, calls, by=()))]
    if by:
        parts += ["", f"by operation and {', '.join(by)}:", format_table(operation_stats(nodes, calls, by=by))]
    if run["config"].operation_sampling == "adaptive":
        final = final_weights(store.op_decisions(run_id))
        if not final.empty:
            parts += ["", "posterior after the last reward (Beta alpha, beta; mean = expected reward):",
                      final.to_string(index=False)]
    return "\n".join(parts)


def final_weights(decisions: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """Per language and operation: the posterior after every stored reward (prior Beta(1, 1)), with how often
    the operation was chosen."""

    counts: dict[tuple[str, str], list[float]] = {}
    for d in decisions:
        for op in d["posterior"]:
            counts.setdefault((d["language"], op), [PRIOR[0], PRIOR[1], 0])
        c = counts[(d["language"], d["operation"])]
        c[2] += 1
        if d["reward"] is not None:
            c[0] += d["reward"]
            c[1] += 1 - d["reward"]
    rows = [{"language": lang, "operation": op, "alpha": a, "beta": b, "mean": round(a / (a + b), 3),
             "chosen": int(n)} for (lang, op), (a, b, n) in counts.items()]
    return pd.DataFrame(rows, columns=["language", "operation", "alpha", "beta", "mean", "chosen"])


def run_frames(store: "Store", run_id: str, nodes: pd.DataFrame | None = None,
               by: Sequence[str] = ("round",)) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """(operation_stats split by `by`, weights_frame or None when the run did not sample adaptively): what the
    Drift page and the report draw."""
    if nodes is None:
        nodes = analysis.nodes_frame(store, run_id)
    stats = operation_stats(nodes, analysis.calls_frame(store, run_id, nodes), by=by)
    run = store.get_run(run_id)
    adaptive = run is not None and run["config"].operation_sampling == "adaptive"
    return stats, (weights_frame(store.op_decisions(run_id)) if adaptive else None)
