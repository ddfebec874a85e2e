"""One self-contained HTML report of a run: summary numbers and every figure, readable offline.

plotly.js is inlined once (with the first figure); the file needs no network and no other file.
`python -m evolab report --db PATH [--run ID] --out report.html` calls `write_report(store, run_id, out)`.
"""
from __future__ import annotations

import datetime as _dt
import html
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from evolab.analysis import frames as analysis
from evolab.analysis import opstats, viz
from evolab.audit import judge, review
from evolab.embeddings import novelty
from evolab.embeddings.embed import threshold_info
from evolab.engine import adaptive, checking
from evolab.llm.base import mask_secrets, redact_url
from evolab.store import Store

if TYPE_CHECKING:  # pragma: no cover
    import plotly.graph_objects as go

    from evolab.embeddings.embed import Embedder

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", "Noto Sans KR", "Malgun Gothic", sans-serif;
       margin: 2rem auto; max-width: 1200px; padding: 0 1rem; color: #222; }
h1 { margin-bottom: 0.2rem; } h2 { margin-top: 2.5rem; border-bottom: 1px solid #ddd; padding-bottom: 0.3rem; }
.sub { color: #666; margin-top: 0; }
.cards { display: flex; flex-wrap: wrap; gap: 0.8rem; margin: 1rem 0; }
.card { border: 1px solid #e3e3e3; border-radius: 6px; padding: 0.6rem 1rem; min-width: 8rem; }
.card .v { font-size: 1.4rem; font-weight: 600; } .card .k { color: #666; font-size: 0.85rem; }
table { border-collapse: collapse; margin: 0.8rem 0; font-size: 0.9rem; }
th, td { border: 1px solid #e3e3e3; padding: 0.25rem 0.6rem; text-align: right; }
th { background: #f6f6f6; } td:first-child, th:first-child { text-align: left; }
.note { background: #fff8e1; border-left: 4px solid #f0b400; padding: 0.5rem 1rem; }
.fig { margin: 1rem 0; }
"""


def _esc(v: Any) -> str:
    return html.escape("" if v is None else str(v))


def _kv_table(rows: dict[str, Any]) -> str:
    body = "".join(f"<tr><th>{_esc(k)}</th><td>{_esc(v)}</td></tr>" for k, v in rows.items())
    return f"<table>{body}</table>"


def _frame_table(df: pd.DataFrame, max_rows: int = 60) -> str:
    if df is None or df.empty:
        return "<p class='sub'>No rows yet.</p>"
    return df.head(max_rows).to_html(index=False, escape=True, na_rep="", float_format=lambda x: f"{x:.3g}",
                                     border=0)


def _cards(items: list[tuple[str, Any]]) -> str:
    return "<div class='cards'>" + "".join(
        f"<div class='card'><div class='v'>{_esc(v)}</div><div class='k'>{_esc(k)}</div></div>" for k, v in items
    ) + "</div>"


class _Figures:
    """Renders figures to <div>s, inlining plotly.js with the first one only."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, fig: "go.Figure") -> str:
        include: bool | str = True if self.count == 0 else False  # True = the library inlined
        self.count += 1
        div = fig.to_html(full_html=False, include_plotlyjs=include, config={"displaylogo": False, "responsive": True},
                          div_id=f"fig{self.count}")
        return f"<div class='fig'>{div}</div>"


def _money(v: float | None) -> str:
    return "" if v is None else f"${v:,.4f}"


def _when(ts: float | None) -> str:
    return _dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M") if ts else ""


def write_report(store: Store, run_id: str, out_path: str | Path, *, embedder: "Embedder | None" = None) -> Path:
    """Write the run's report to `out_path` (one HTML file, plotly.js inlined) and return its path.

    The diversity section embeds the instructions (vectors cached in the store): `embedder` or, when
    None, the one EVOLAB_EMBED_* variables name (default: the packaged all-MiniLM-L6-v2). If that
    fails the report says why in place of the section instead of failing.
    """
    out = Path(out_path)
    overview = analysis.run_overview(store, run_id)
    nodes = analysis.nodes_frame(store, run_id)
    calls = analysis.calls_frame(store, run_id, nodes)
    fig = _Figures()
    parts: list[str] = []

    # -- summary -------------------------------------------------------------------------------------
    by_status = overview["by_status"]
    parts.append(_cards([
        ("seeds", overview["seeds"]), ("nodes", overview["nodes"]), ("kept", by_status.get("kept", 0)),
        ("eliminated", by_status.get("eliminated", 0)), ("failed", by_status.get("failed", 0)),
        ("calls", overview["calls"]), ("tokens", f"{overview['tokens']:,}"),
        ("cost", _money(overview["cost_usd"]) + ("" if overview["price_known"] else " (price unknown)")),
    ]))
    config = {k: overview[k] for k in ("model", "base_url", "rounds", "fanout", "random_seed", "language",
                                       "concurrency", "budget_usd")}
    config["base_url"] = redact_url(config["base_url"])  # never a URL's user:pass@
    counts = {"nodes by status": ", ".join(f"{k}: {v}" for k, v in sorted(by_status.items())) or "none",
              "eliminations by rule": ", ".join(f"{k}: {v}" for k, v in sorted(overview["by_rule"].items()))
              or "none",
              "kept pool per round": ", ".join(f"{k}: {v}" for k, v in sorted(overview["kept_per_round"].items()))
              or "none",
              "calls (cached / failed)": f"{overview['calls']} ({overview['cached_calls']} / "
                                         f"{overview['failed_calls']})",
              "tokens (prompt / completion)": f"{overview['prompt_tokens']:,} / {overview['completion_tokens']:,}",
              "cost": _money(overview["cost_usd"]) + ("" if overview["price_known"] else
                                                      " (some models have no known price)"),
              "duration of calls": f"{overview['duration_s']:.1f} s" if overview["duration_s"] else ""}
    parts.append("<h2>Summary</h2><div style='display:flex;gap:2rem;flex-wrap:wrap'>"
                 f"<div><h3>Configuration</h3>{_kv_table(config)}</div>"
                 f"<div><h3>Counts</h3>{_kv_table(counts)}</div></div>")

    # -- lineage -------------------------------------------------------------------------------------
    parts.append("<h2>Lineage</h2><p class='sub'>Each seed's tree by round; colour = operation, "
                 "symbol = status. Hover a node for its instruction.</p>")
    parts.append(fig(viz.lineage_figure(nodes)))

    # -- drift ---------------------------------------------------------------------------------------
    ro = analysis.round_operation_frame(nodes, include_all=True)
    parts.append("<h2>Drift</h2><p class='sub'>Means per round and operation with 95% confidence intervals "
                 "(bold line: all operations).</p>")
    for metric in analysis.drift_metrics():
        parts.append(fig(viz.drift_figure(ro, metric)))
    deltas = analysis.deltas_frame(nodes)
    parts.append("<h3>Does an operation make instructions harder?</h3>"
                 "<p class='sub'>Mean change from parent to child, with 95% CI.</p>")
    parts.append(fig(viz.deltas_figure(deltas)))
    parts.append(_frame_table(deltas))

    # -- operations ----------------------------------------------------------------------------------
    ops, op_weights = opstats.run_frames(store, run_id, nodes, by=["round"])
    parts.append("<h2>Operations</h2><p class='sub'>What each operation did per round: kept share, mean difficulty "
                 "change from parent to child (95% CI) and calls per kept child; below, all rounds together.</p>")
    parts.append(fig(viz.operation_stats_figure(ops, "round")))
    parts.append(_frame_table(opstats.summary_table(opstats.operation_stats(nodes, calls, by=()))))
    if op_weights is not None:
        parts.append(f"<h3>Adaptive operation weights</h3><p class='sub'>Thompson sampling; reward: "
                     f"{_esc(adaptive.REWARD_TEXT)}. The final posterior per language:</p>")
        parts.append(fig(viz.adaptive_weights_figure(op_weights)))
        parts.append(_frame_table(opstats.final_weights(store.op_decisions(run_id))))

    # -- eliminations --------------------------------------------------------------------------------
    parts.append("<h2>Eliminations</h2>")
    parts.append(fig(viz.eliminations_figure(analysis.eliminations_frame(nodes, "round"), "round")))
    parts.append(fig(viz.eliminations_figure(analysis.eliminations_frame(nodes, "operation"), "operation")))
    table = analysis.eliminations_table(nodes, "operation")
    if not table.empty:
        parts.append(_frame_table(table.reset_index()))

    # -- diversity -----------------------------------------------------------------------------------
    parts.append("<h2>Diversity</h2>")
    parts.append(_diversity_section(store, run_id, nodes, embedder, fig))

    # -- cost ----------------------------------------------------------------------------------------
    parts.append("<h2>Cost</h2>")
    cost = analysis.cost_frame(calls)
    parts.append(fig(viz.cost_figure(cost)))
    parts.append(_frame_table(cost))

    # -- judgments -----------------------------------------------------------------------------------
    rows = [r for r in store.judgments()
            if r["comparison"].startswith(run_id) or f"-vs-{run_id}" in r["comparison"]]
    if rows:
        parts.append("<h2>Pairwise judgments</h2>")
        parts.append(f"<p class='note'>{_esc(review.JUDGE_CAVEAT)}</p>")
        summaries = []
        for comparison in dict.fromkeys(r["comparison"] for r in rows):
            s = judge.summarize_judgments(r for r in rows if r["comparison"] == comparison)
            swap = judge.position_swap_counts(r for r in rows if r["comparison"] == comparison)
            summaries.append({"comparison": comparison, **{k: s[k] for k in ("n", "win", "tie", "lose", "unknown",
                                                                               "win_rate", "lose_rate")},
                              "same verdict both orders": swap["same"], "order changed verdict": swap["flipped"],
                              "unreadable in an order": swap["unread"]})
        parts.append("<p class='sub'>Each pair is judged twice with the answers swapped; A wins only when it wins in "
                     "both orders (or wins one and ties the other). The last three columns count how the two orders "
                     "went.</p>")
        parts.append(_frame_table(pd.DataFrame(summaries)))
        checked = review.checked_share(store, [run_id])
        parts.append("<p><b>Checked answers</b> (final number the same when answered again): "
                     + (_esc(review.NO_CHECKED_ANSWERS) if checked is None else
                        _esc(review.checked_share_line(checked, "this run", run_id)) + "</p>"
                        + _frame_table(checked[checked["run_id"] == run_id]))
                     + ("</p>" if checked is None else ""))

    # -- checked answers (evolab/engine/checking.py) ------------------------------------------------------------

    consistency = checking.share_with_intervals(checking.consistent_share(store, [run_id]))
    parts.append("<h2>Checked answers</h2>")
    parts.append(f"<p class='sub'>{_esc(viz.CONSISTENCY_QUESTION)} Items whose answer is a number were answered "
                 "again k times at a temperature above 0; an answer is consistent when most samples give the same "
                 f"number (within {checking.TOLERANCE:.0%}). 95% Wilson intervals.</p>")
    if consistency.empty:
        parts.append(f"<p class='sub'>No checked answers: <code>python -m evolab check --run {_esc(run_id)}</code> "
                     "checks a stored run (k calls per numeric item).</p>")
    else:
        if bool(consistency["too_small"].any()):
            parts.append("<p class='note'>Some rounds have too few checked answers to say anything (hollow markers)."
                         "</p>")
        parts.append(fig(viz.consistency_figure(consistency)))
        parts.append(_frame_table(consistency.drop(columns=["run_id"])))

    # -- agreement with a person ---------------------------------------------------------------------
    agreement = review.agreement(store, [run_id])
    parts.append("<h2>Agreement with a person</h2>")
    too_small = not agreement.empty and bool(agreement["too_small"].any())
    parts.append(f"<p class='{'note' if too_small else 'sub'}'>{_esc(review.agreement_note(agreement))}</p>")
    if not agreement.empty:
        parts.append(fig(viz.agreement_figure(agreement)))
        parts.append(_frame_table(agreement))

    title = f"evolab report: {overview['name']}"
    doc = (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{_esc(title)}</title><style>{CSS}</style></head><body>"
        f"<h1>{_esc(title)}</h1><p class='sub'>run {_esc(run_id)} · status {_esc(overview['status'])} · "
        f"created {_esc(_when(overview['created_at']))} · report written {_esc(time.strftime('%Y-%m-%d %H:%M'))}</p>"
        + (f"<p class='note'>Run error: {_esc(mask_secrets(overview['error']))}</p>" if overview.get("error") else "")
        + "".join(parts)
        + "</body></html>\n"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(doc, encoding="utf-8")
    tmp.replace(out)
    return out


def _diversity_section(store: Store, run_id: str, nodes: pd.DataFrame, embedder: "Embedder | None",
                       fig: _Figures) -> str:
    if nodes.empty:
        return fig(viz.umap_figure(pd.DataFrame())) + fig(viz.diversity_figure(pd.DataFrame()))
    try:
        if embedder is None:  # the page's and the warm-up's choice: the report warms the app's caches too
            embedder = analysis.map_embedder(nodes)
        frame, vectors = analysis.embedding_map(store, run_id, embedder, nodes=nodes)
        thresholds = threshold_info(embedder, store)  # the model's own threshold for a run's map
        div = novelty.diversity_frame(frame, vectors, threshold=thresholds.run_map)
    except (ImportError, OSError, RuntimeError, ValueError) as e:
        return (f"<p class='note'>The diversity section is missing: embedding the instructions failed "
                f"({_esc(e)}). Set EVOLAB_EMBED_MODEL to a local sentence-transformers folder or "
                f"EVOLAB_EMBED_BASE_URL to an embeddings endpoint and write the report again.</p>")
    share = float(frame["near_duplicate"].mean()) if len(frame) else 0.0
    return (f"<p class='sub'>One UMAP map of all {len(frame)} nodes ({_esc(thresholds.caption)}); "
            f"red rings: near-duplicates (cosine &ge; {thresholds.run_map:.3f} with another node, "
            f"{share:.0%} of nodes). Numbers per round count the seed and kept pool; compare them only with "
            f"runs mapped by the same model.</p>"
            + (f"<p class='note'>{_esc(thresholds.note)}</p>" if thresholds.note else "")
            + fig(viz.umap_figure(frame, "round"))
            + fig(viz.umap_figure(frame, "operation"))
            + fig(viz.diversity_figure(div))
            + _frame_table(div))
