"""plotly figures of a run: DataFrame in (from `evolab.analysis.frames` / `evolab.embeddings.novelty`), Figure out.

No Streamlit here: the app, the HTML report and notebooks draw the same figures. Every builder
returns a figure with a "no data yet" note when its frame is empty. Traces carry node ids in
`customdata`, so a click or selection in the app maps back to nodes. Above `WEBGL_THRESHOLD`
points the scatter traces are `go.Scattergl`, so a browser draws 10,000 nodes smoothly.
"""
from __future__ import annotations

import html
import math
import textwrap
from typing import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative, sample_colorscale
from plotly.subplots import make_subplots

from evolab.engine import scoring
from evolab.engine.eliminator import all_rule_ids
from evolab.engine.operations import OPERATION_REGISTRY, operation_names
from evolab.schema import STATUSES

WEBGL_THRESHOLD = 1000

# Seeds and the "all operations" line; an operation's own colour comes from its registration.
OPERATION_COLORS: dict[str, str] = {"seed": "#7f7f7f", "all": "#111111"}
STATUS_SYMBOLS: dict[str, str] = {"seed": "diamond", "kept": "circle", "eliminated": "x", "failed": "square",
                                  "pending": "circle-open"}
STATUS_COLORS: dict[str, str] = {"seed": "#7f7f7f", "kept": "#2ca02c", "eliminated": "#d62728",
                                 "failed": "#ff7f0e", "pending": "#bcbd22"}
RULE_PALETTE = qualitative.Set2 + qualitative.Pastel1
# Labels of the metrics no scorer names (a scorer's metric takes the scorer's `label`).
METRIC_LABELS = {"cx_index": "Complexity index (heuristic)", "instruction_length": "Instruction length (characters)"}


def rule_color(rule: str) -> str:
    """The colour of an elimination rule: its place among every rule id, plugins' rules included."""
    ids = all_rule_ids() + ("unknown",)
    return RULE_PALETTE[(ids.index(rule) if rule in ids else len(ids) - 1) % len(RULE_PALETTE)]


def metric_label(metric: str) -> str:
    scorer = scoring.scorer_of(metric)
    if metric in METRIC_LABELS:
        return METRIC_LABELS[metric]
    return scorer.label or metric if scorer is not None and metric == type(scorer).name else metric


# -- helpers -------------------------------------------------------------------------------------------
def wrap_hover(text: str | None, width: int = 60, max_chars: int = 600) -> str:
    """HTML-escaped text with <br> about every `width` characters, cut at `max_chars` (hover boxes)."""
    text = " ".join(str(text or "").split())
    if len(text) > max_chars:
        text = text[:max_chars - 1] + "…"
    lines = textwrap.wrap(text, width=width, break_long_words=True, break_on_hyphens=False) or [""]
    return "<br>".join(html.escape(line, quote=False) for line in lines)


def empty_figure(title: str = "", message: str = "No data yet") -> go.Figure:
    """A blank figure with a centred note, for frames with nothing to draw."""
    fig = go.Figure()
    fig.add_annotation(text=message, x=0.5, y=0.5, xref="paper", yref="paper", showarrow=False,
                       font={"size": 16, "color": "#888"})
    fig.update_layout(title=title, xaxis={"visible": False}, yaxis={"visible": False}, height=320,
                      template="plotly_white")
    return fig


def is_empty_figure(fig: go.Figure) -> bool:
    return not fig.data and any(a.text for a in fig.layout.annotations)


def operation_color(op: str, _extra: dict[str, str] = {}) -> str:  # noqa: B006 - a deliberate memo
    if op in OPERATION_COLORS:
        return OPERATION_COLORS[op]
    if op in OPERATION_REGISTRY and OPERATION_REGISTRY[op].color:
        return OPERATION_REGISTRY[op].color
    if op not in _extra:
        _extra[op] = qualitative.Dark24[len(_extra) % len(qualitative.Dark24)]
    return _extra[op]


def _scatter_class(n: int, webgl: bool | None):
    return go.Scattergl if (webgl if webgl is not None else n > WEBGL_THRESHOLD) else go.Scatter


def _op_order(ops: Sequence[str]) -> list[str]:
    known = ["seed", *operation_names()]
    return [o for o in known if o in ops] + sorted(o for o in set(ops) if o not in known)


def _fmt(v: object, digits: int = 2) -> str:
    try:
        f = float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return ""
    return "" if math.isnan(f) else f"{f:.{digits}f}"


def _node_hover(row: dict) -> str:
    head = f"<b>{html.escape(str(row.get('operation', '')))}</b> · round {row.get('round', '')} · {row.get('status', '')}"
    if isinstance(row.get("rule"), str) and row.get("rule"):
        head += f" ({html.escape(row['rule'])})"
    scores = [f"{label} {_fmt(row.get(col))}" for col, label in
              (("difficulty", "difficulty"), ("quality", "quality"), ("cx_index", "cx")) if _fmt(row.get(col))]
    parts = [head]
    if scores:
        parts.append(" · ".join(scores))
    if row.get("near_duplicate") is True or row.get("near_duplicate") is np.True_:
        parts.append(f"<i>near-duplicate of {html.escape(str(row.get('nearest_id')))} "
                     f"(cosine {_fmt(row.get('max_cosine'), 3)})</i>")
    parts.append(wrap_hover(row.get("instruction")))
    if isinstance(row.get("input"), str) and row["input"]:
        parts.append("<i>input:</i> " + wrap_hover(row["input"], max_chars=200))
    return "<br>".join(parts)


# -- lineage -------------------------------------------------------------------------------------------
def lineage_layout(nodes: pd.DataFrame, gap: float = 1.0) -> pd.Series:
    """y position per node id: each seed's tree laid out on its own band (seeds in creation order),
    leaves on consecutive slots, a parent at the mean of its children, so children sit near parents."""
    if nodes.empty:
        return pd.Series(dtype=float)
    order_cols = [c for c in ("created_at", "id") if c in nodes]
    ordered = nodes.sort_values(order_cols, kind="stable") if order_cols else nodes
    ids = list(ordered["id"])
    present = set(ids)
    parents = dict(zip(ordered["id"], ordered["parent_id"]))
    children: dict[str, list[str]] = {}
    roots: list[str] = []
    for nid in ids:
        p = parents[nid]
        if isinstance(p, str) and p in present and p != nid:
            children.setdefault(p, []).append(nid)
        else:
            roots.append(nid)  # a seed, or a node whose parent is not in the frame
    y: dict[str, float] = {}
    slot = 0.0
    for root in roots:
        # iterative post-order: leaves take the next slot, parents the mean of their children
        stack: list[tuple[str, bool]] = [(root, False)]
        while stack:
            nid, done = stack.pop()
            kids = children.get(nid, [])
            if done or not kids:
                if kids:
                    y[nid] = float(np.mean([y[k] for k in kids]))
                else:
                    y[nid] = slot
                    slot += 1
                continue
            stack.append((nid, True))
            stack.extend((k, False) for k in reversed(kids))
        slot += gap
    return pd.Series(y, dtype=float)


def lineage_figure(nodes: pd.DataFrame, *, webgl: bool | None = None, title: str = "Lineage") -> go.Figure:
    """Nodes by round (x) and lineage position (y): colour = operation, symbol = status, hover = the
    instruction, `customdata` = node ids, grey lines parent -> child. WebGL above 1000 nodes."""
    if nodes is None or nodes.empty:
        return empty_figure(title, "No nodes yet")
    df = nodes.copy()
    ys = lineage_layout(df)
    df["y"] = df["id"].map(ys)
    df["x"] = df["round"].astype(float)
    Scatter = _scatter_class(len(df), webgl)
    fig = go.Figure()
    pos = df.set_index("id")[["x", "y"]]
    edges = df[df["parent_id"].isin(pos.index)]
    if len(edges):
        px_, py_ = pos.loc[edges["parent_id"], "x"].to_numpy(), pos.loc[edges["parent_id"], "y"].to_numpy()
        cx_, cy_ = edges["x"].to_numpy(), edges["y"].to_numpy()
        ex = np.column_stack([px_, cx_, np.full(len(edges), np.nan)]).ravel()
        ey = np.column_stack([py_, cy_, np.full(len(edges), np.nan)]).ravel()
        fig.add_trace(Scatter(x=ex, y=ey, mode="lines", line={"color": "rgba(150,150,150,0.5)", "width": 1},
                              hoverinfo="skip", showlegend=False, name="edges"))
    size = 10 if len(df) <= WEBGL_THRESHOLD else 5
    for op in _op_order(list(df["operation"].unique())):
        g = df[df["operation"] == op]
        fig.add_trace(Scatter(
            x=g["x"], y=g["y"], mode="markers", name=op, legendgroup="operation",
            legendgrouptitle_text="operation",
            marker={"color": operation_color(op), "size": size,
                    "symbol": [STATUS_SYMBOLS.get(s, "circle") for s in g["status"]],
                    "line": {"width": 0.5, "color": "white"}},
            customdata=list(g["id"]), text=[_node_hover(r) for r in g.to_dict("records")],
            hovertemplate="%{text}<extra></extra>"))
    for status in [s for s in STATUSES if s in set(df["status"])]:
        fig.add_trace(Scatter(x=[None], y=[None], mode="markers", name=status, legendgroup="status",
                              legendgrouptitle_text="status", hoverinfo="skip",
                              marker={"color": "#555", "size": 9, "symbol": STATUS_SYMBOLS.get(status, "circle")}))
    slots = float(df["y"].max()) + 1 if len(df) else 1
    max_round = int(df["round"].max())
    fig.update_layout(
        title=title, template="plotly_white", hovermode="closest", clickmode="event+select",
        height=int(min(1200, max(420, 16 * slots + 140))),
        xaxis={"title": "round", "tickmode": "array", "tickvals": list(range(max_round + 1)), "zeroline": False},
        yaxis={"title": "lineage", "showticklabels": False, "autorange": "reversed", "zeroline": False},
        legend={"groupclick": "toggleitem"},
    )
    return fig


def ci_labels(lo, hi, n, *, signed: bool = False) -> list[str]:
    """Hover text for each interval: "95% CI 4.10–6.20", or why there is none."""
    size = len(n) if n is not None else len(lo) if lo is not None else 0
    lo = [math.nan] * size if lo is None else list(lo)
    hi = [math.nan] * size if hi is None else list(hi)
    counts = [math.nan] * size if n is None else list(n)
    fmt = "{:+.2f}" if signed else "{:.2f}"
    out = []
    for a, b, k in zip(lo, hi, counts):
        if a is None or b is None or pd.isna(a) or pd.isna(b):
            out.append("no interval: too few values" if pd.notna(k) and k < 3 else "no interval")
        else:
            out.append(f"95% CI {fmt.format(a)}–{fmt.format(b)}")
    return out


# -- drift ---------------------------------------------------------------------------------------------
def drift_figure(frame: pd.DataFrame, metric: str = "difficulty", *, title: str | None = None) -> go.Figure:
    """Mean of `metric` per round, one line per operation (and a bold "all" line when the frame has
    it), with 95% CI error bars. `frame` is `analysis.round_operation_frame(nodes, include_all=True)`."""
    label = metric_label(metric)
    title = title or f"{label} by round and operation"
    mean_col, lo_col, hi_col = f"{metric}_mean", f"{metric}_lo", f"{metric}_hi"
    if frame is None or frame.empty or mean_col not in frame or frame[mean_col].notna().sum() == 0:
        return empty_figure(title, f"No {metric} values yet")
    df = frame[frame[mean_col].notna()].copy()
    if "operation" not in df:
        df["operation"] = "all"
    ops = _op_order(list(df["operation"].unique()))
    fig = go.Figure()
    for k, op in enumerate(ops):
        g = df[df["operation"] == op].sort_values("round")
        offset = 0.0 if op == "all" else (k - (len(ops) - 1) / 2) * 0.04  # keep error bars apart
        # No interval (fewer than 3 values): NaN draws no whisker, and the hover says why.
        upper = (g[hi_col] - g[mean_col]) if hi_col in g else None
        lower = (g[mean_col] - g[lo_col]) if lo_col in g else None
        n = g[f"{metric}_n"] if f"{metric}_n" in g else g.get("n")
        fig.add_trace(go.Scatter(
            x=g["round"].astype(float) + offset, y=g[mean_col], name=op, mode="lines+markers",
            line={"color": operation_color(op), "width": 3 if op == "all" else 1.5,
                  "dash": "solid" if op == "all" else "dot"},
            error_y=None if upper is None else {"type": "data", "array": upper, "arrayminus": lower,
                                                "visible": True, "thickness": 1},
            customdata=np.column_stack([g["round"], n if n is not None else np.full(len(g), np.nan),
                                        ci_labels(g.get(lo_col), g.get(hi_col), n)]),
            hovertemplate=(f"<b>{html.escape(op)}</b> round %{{customdata[0]}}<br>{html.escape(metric)} "
                           "%{y:.2f} (%{customdata[2]})<br>n = %{customdata[1]}<extra></extra>")))
    rounds = sorted(int(r) for r in df["round"].unique())
    fig.update_layout(title=title, template="plotly_white", yaxis_title=label,
                      xaxis={"title": "round", "tickmode": "array", "tickvals": rounds})
    if (y_range := scale_range(df, metric)) is not None:
        fig.update_layout(yaxis={"range": y_range})
        fig.update_traces(cliponaxis=False)  # a mean at the scale's end shows whole
    return fig


def scale_range(df: pd.DataFrame, metric: str) -> list[float] | None:
    """A y range for a metric on a scale (difficulty 1-10, quality 0-5) that never runs past the scale's ends:
    around the means and their intervals, with a little room, clipped to the scale."""
    scorer = scoring.scorer_of(metric)  # a scorer's `scale`, as analysis.frames.metric_scale reads it
    scale = scorer.scale if scorer is not None and metric == type(scorer).name else None
    if scale is None:
        return None
    values = pd.concat([df[c] for c in (f"{metric}_mean", f"{metric}_lo", f"{metric}_hi") if c in df]).dropna()
    if values.empty:
        return [scale[0], scale[1]]
    low, high = float(values.min()), float(values.max())
    pad = max(0.05 * (scale[1] - scale[0]), 0.1 * (high - low))
    return [max(scale[0], low - pad), min(scale[1], high + pad)]


def deltas_figure(deltas: pd.DataFrame, *, title: str = "Parent -> child change by operation") -> go.Figure:
    """Mean child - parent change per operation with 95% CI, one panel per metric
    (`analysis.deltas_frame`)."""
    if deltas is None or deltas.empty or deltas["mean"].notna().sum() == 0:
        return empty_figure(title, "No parent/child pairs with scores yet")
    metrics = [m for m in dict.fromkeys(deltas["metric"]) if deltas.loc[deltas["metric"] == m, "mean"].notna().any()]
    fig = make_subplots(rows=1, cols=len(metrics), subplot_titles=[metric_label(m) for m in metrics])
    for c, m in enumerate(metrics, start=1):
        g = deltas[(deltas["metric"] == m) & deltas["mean"].notna()]
        ops = _op_order(list(g["operation"]))
        g = g.set_index("operation").loc[ops].reset_index()
        fig.add_trace(go.Bar(
            x=g["operation"], y=g["mean"], marker_color=[operation_color(o) for o in g["operation"]],
            error_y={"type": "data", "array": g["hi"] - g["mean"], "arrayminus": g["mean"] - g["lo"]},
            customdata=np.column_stack([g["n"], g["share_up"], ci_labels(g["lo"], g["hi"], g["n"], signed=True)]),
            showlegend=False, name=m,
            hovertemplate=("%{x}: %{y:+.2f} (%{customdata[2]})<br>n = %{customdata[0]}, "
                           "up in %{customdata[1]:.0%}<extra></extra>")),
            row=1, col=c)
        fig.add_hline(y=0, line={"color": "#999", "width": 1}, row=1, col=c)
    fig.update_layout(title=title, template="plotly_white", height=380)
    return fig


# -- operations (issue 11) ---------------------------------------------------------------------------------
def operation_stats_figure(stats: pd.DataFrame, split: str | None = "round", *,
                           title: str = "What each operation did") -> go.Figure:
    """Three panels from `opstats.operation_stats(nodes, calls, by=[split])`: kept share, mean difficulty change
    (95% CI whiskers; none under 3 values) and calls per kept child; per `split` value (one line per
    operation) or, with `split` None, one bar per operation."""
    if stats is None or stats.empty:
        return empty_figure(title, "No evolved children yet")
    panels = (("kept_share", "kept share", None), ("difficulty_delta_mean", "difficulty change (child - parent)",
                                                    ("difficulty_delta_lo", "difficulty_delta_hi")),
              ("calls_per_kept", "calls per kept child", None))
    fig = make_subplots(rows=1, cols=3, subplot_titles=[p[1] for p in panels])
    by_x = split if split and split in stats else None
    ops = _op_order(list(stats["operation"].unique()))
    for k, op in enumerate(ops):
        g = stats[stats["operation"] == op]
        if by_x:
            g = g.sort_values(by_x)
        x = g[by_x].astype(str) if by_x else g["operation"]
        for c, (col, label, ci) in enumerate(panels, start=1):
            err = None
            if ci is not None:
                err = {"type": "data", "array": (g[ci[1]] - g[col]).fillna(0),
                       "arrayminus": (g[col] - g[ci[0]]).fillna(0), "visible": True, "thickness": 1}
            common = dict(x=x, y=g[col], name=op, legendgroup=op, showlegend=c == 1, error_y=err,
                          customdata=np.column_stack([g["tried"], g["kept"]]),
                          hovertemplate=f"<b>{html.escape(op)}</b> %{{x}}<br>{html.escape(label)}: %{{y:.3g}}"
                                        "<br>tried %{customdata[0]}, kept %{customdata[1]}<extra></extra>")
            if by_x:
                fig.add_trace(go.Scatter(mode="lines+markers", line={"color": operation_color(op)}, **common),
                              row=1, col=c)
            else:
                fig.add_trace(go.Bar(marker_color=operation_color(op), **common), row=1, col=c)
    fig.add_hline(y=0, line={"color": "#999", "width": 1}, row=1, col=2)
    fig.update_yaxes(tickformat=".0%", rangemode="tozero", row=1, col=1)
    fig.update_yaxes(rangemode="tozero", row=1, col=3)
    if by_x:
        fig.update_xaxes(title_text=by_x, type="category")
    fig.update_layout(title=title, template="plotly_white", height=400, legend_title_text="operation")
    return fig


def adaptive_weights_figure(weights: pd.DataFrame, *,
                            title: str = "Adaptive operation weights over the run") -> go.Figure:
    """The posterior mean of each operation's reward as each decision saw it (`opstats.weights_frame`), against
    the decision index; one panel per language; a marker where the operation was chosen."""
    if weights is None or weights.empty:
        return empty_figure(title, "No adaptive decisions in this run")
    languages = list(dict.fromkeys(weights["language"]))
    fig = make_subplots(rows=len(languages), cols=1, shared_xaxes=True, subplot_titles=languages,
                        vertical_spacing=0.12)
    for r, lang in enumerate(languages, start=1):
        w = weights[weights["language"] == lang]
        for op in _op_order(list(w["operation"].unique())):
            g = w[w["operation"] == op].sort_values("seq")
            fig.add_trace(go.Scatter(
                x=g["seq"], y=g["mean"], name=op, legendgroup=op, showlegend=r == 1, mode="lines",
                line={"color": operation_color(op), "shape": "hv"},
                customdata=np.column_stack([g["alpha"], g["beta"]]),
                hovertemplate=f"<b>{html.escape(op)}</b> decision %{{x}}<br>posterior mean %{{y:.2f}} "
                              "(Beta %{customdata[0]:g}, %{customdata[1]:g})<extra></extra>"), row=r, col=1)
            chosen = g[g["chosen"]]
            fig.add_trace(go.Scatter(
                x=chosen["seq"], y=chosen["mean"], name=f"{op} chosen", legendgroup=op, showlegend=False,
                mode="markers", marker={"color": operation_color(op), "size": 5},
                hovertemplate=f"decision %{{x}}: {html.escape(op)} chosen<extra></extra>"), row=r, col=1)
        fig.update_yaxes(title_text="P(reward)", range=[0, 1], row=r, col=1)
    fig.update_xaxes(title_text="decision (in the order made)", row=len(languages), col=1)
    fig.update_layout(title=title, template="plotly_white", height=260 + 220 * len(languages),
                      legend_title_text="operation")
    return fig


# -- eliminations --------------------------------------------------------------------------------------
def eliminations_figure(frame: pd.DataFrame, by: str | None = None, *,
                        title: str | None = None) -> go.Figure:
    """Stacked bars: eliminated and failed nodes per round (or operation), one colour per rule.
    `frame` is `analysis.eliminations_frame(nodes, by)`."""
    by = by or (frame.columns[0] if frame is not None and len(frame.columns) else "round")
    title = title or f"Eliminations by rule per {by}"
    if frame is None or frame.empty:
        return empty_figure(title, "No eliminations yet")
    fig = go.Figure()
    cats = sorted(frame[by].unique(), key=lambda v: (isinstance(v, str), v))
    labels = [f"round {int(c)}" if by == "round" else str(c) for c in cats]
    for rule in dict.fromkeys(frame["rule"]):
        g = frame[frame["rule"] == rule].set_index(by).reindex(cats)
        fig.add_trace(go.Bar(
            x=labels, y=g["count"].fillna(0), name=rule, marker_color=rule_color(rule),
            customdata=g["rate"].fillna(0) if "rate" in g else None,
            hovertemplate=f"{html.escape(str(rule))}: %{{y}}" + (" (%{customdata:.0%} of produced)" if "rate" in g
                                                                  else "") + "<extra></extra>"))
    fig.update_layout(barmode="stack", title=title, template="plotly_white", yaxis_title="nodes",
                      xaxis_title=by, legend_title_text="rule")
    return fig


# -- agreement with a person (issue 12) ----------------------------------------------------------------
def agreement_figure(frame: pd.DataFrame, *, title: str = "How often a person agrees with each check") -> go.Figure:
    """Share of audited nodes where the person agreed with the check, with its 95% Wilson interval; checks whose
    sample is too small to say anything are grey (`review.agreement_frame`)."""
    if frame is None or frame.empty:
        return empty_figure(title, "No audited reviews yet")
    g = frame.iloc[::-1]  # first check on top
    labels = [f"{c} (n = {n})" for c, n in zip(g["check"], g["n"])]
    fig = go.Figure(go.Bar(
        x=g["share"], y=labels, orientation="h",
        marker_color=["#bbbbbb" if small else "#1f77b4" for small in g["too_small"]],
        error_x={"type": "data", "array": (g["high"] - g["share"]).clip(lower=0),
                 "arrayminus": (g["share"] - g["low"]).clip(lower=0)},
        customdata=np.column_stack([g["agree"], g["n"], g["low"], g["high"]]),
        hovertemplate="%{y}: agreed on %{customdata[0]} of %{customdata[1]} (%{x:.0%}), "
                      "95% CI %{customdata[2]:.0%}-%{customdata[3]:.0%}<extra></extra>"))
    fig.update_layout(title=title, template="plotly_white", xaxis={"range": [0, 1.02], "tickformat": ".0%",
                                                                   "title": "agreement"},
                      yaxis={"tickmode": "array", "tickvals": labels, "automargin": True},  # every check labelled
                      height=(110 if title else 70) + 40 * len(g), margin={"l": 10, "t": 50 if title else 10})
    return fig


# -- checked answers (issue 12, evolab/engine/checking.py) --------------------------------------------------------
CONSISTENCY_QUESTION = "Evolution makes questions harder; does it make the answers less reliable?"


def consistency_figure(frame: pd.DataFrame, *, title: str = "Share of consistent answers per round") -> go.Figure:
    """Per round, the share of checked answers whose number k samples reproduced, with its 95% Wilson interval
    (`checking.share_with_intervals`); one line per run; hollow markers where the sample is too small to say
    anything."""
    if frame is None or frame.empty or not (frame["checked"] > 0).any():
        return empty_figure(title, "No checked answers yet (run with --check-answers, or python -m evolab check)")
    fig = go.Figure()
    runs = list(dict.fromkeys(frame["run_id"]))
    for i, (run_id, g) in enumerate(frame[frame["checked"] > 0].groupby("run_id", sort=False)):
        g = g.sort_values("round")
        color = qualitative.Plotly[i % len(qualitative.Plotly)]
        fig.add_trace(go.Scatter(
            x=g["round"], y=g["share"], mode="lines+markers", name=str(run_id), showlegend=len(runs) > 1,
            line={"color": color},
            marker={"size": 10, "color": ["white" if small else color for small in g["too_small"]],
                    "line": {"color": color, "width": 2}},
            error_y={"type": "data", "array": (g["high"] - g["share"]).clip(lower=0),
                     "arrayminus": (g["share"] - g["low"]).clip(lower=0), "color": color},
            customdata=np.column_stack([g["consistent"], g["checked"], g["inconsistent"], g["not_checkable"],
                                        g["low"], g["high"]]),
            hovertemplate="round %{x}: %{customdata[0]} of %{customdata[1]} consistent (%{y:.0%}), 95% CI "
                          "%{customdata[4]:.0%}-%{customdata[5]:.0%}<br>%{customdata[2]} inconsistent, "
                          "%{customdata[3]} not checkable<extra>" + html.escape(str(run_id)) + "</extra>"))
    fig.update_layout(title=title, template="plotly_white", xaxis={"title": "round", "dtick": 1},
                      yaxis={"title": "consistent / checked", "range": [0, 1.05], "tickformat": ".0%"})
    return fig


# -- embeddings ----------------------------------------------------------------------------------------
def _value_colors(values: list, color_by: str) -> dict:
    if color_by == "operation":
        return {v: operation_color(str(v)) for v in values}
    if color_by == "status":
        return {v: STATUS_COLORS.get(str(v), "#333") for v in values}
    if color_by == "round" and values:
        hi = max(values) if max(values) > 0 else 1
        return dict(zip(values, sample_colorscale("Viridis", [v / hi * 0.9 for v in values])))
    palette = qualitative.Plotly
    return {v: palette[i % len(palette)] for i, v in enumerate(values)}


def umap_figure(df: pd.DataFrame, color_by: str = "round", *, webgl: bool | None = None,
                title: str | None = None, show_duplicates: bool = True) -> go.Figure:
    """The 2-D map (columns x, y) coloured by round, operation, status (or any column, e.g. run_id);
    near-duplicates (`near_duplicate` True) ringed in red; nodes a selection chose (`chosen` True) starred.
    `customdata` = node ids."""
    title = title or f"Instructions in embedding space (UMAP), by {color_by}"
    if df is None or df.empty or "x" not in df or df["x"].notna().sum() == 0:
        return empty_figure(title, "No embeddings yet")
    if color_by not in df:
        raise ValueError(f"Cannot colour by {color_by!r}: the frame has no such column "
                         f"(try round, operation or status).")
    Scatter = _scatter_class(len(df), webgl)
    values = list(df[color_by].dropna().unique())
    if color_by == "round":
        values = sorted(values)
    elif color_by == "operation":
        values = _op_order(values)
    elif color_by == "status":
        values = [s for s in STATUSES if s in values] + sorted(v for v in values if v not in STATUSES)
    else:
        values = sorted(values, key=str)
    colors = _value_colors(values, color_by)
    size = 7 if len(df) <= WEBGL_THRESHOLD else 4
    fig = go.Figure()
    ids = df["id"] if "id" in df else pd.Series(range(len(df)), index=df.index)
    for v in values:
        mask = df[color_by] == v
        g = df[mask]
        name = f"round {int(v)}" if color_by == "round" else str(v)
        fig.add_trace(Scatter(
            x=g["x"], y=g["y"], mode="markers", name=name, customdata=list(ids[mask]),
            marker={"color": colors[v], "size": size, "opacity": 0.8},
            text=[_node_hover(r) for r in g.to_dict("records")], hovertemplate="%{text}<extra></extra>"))
    if show_duplicates and "near_duplicate" in df and df["near_duplicate"].fillna(False).astype(bool).any():
        mask = df["near_duplicate"].fillna(False).astype(bool)
        d = df[mask]
        fig.add_trace(Scatter(  # rings only: the point underneath carries the hover, duplicate included
            x=d["x"], y=d["y"], mode="markers", name="near-duplicate", customdata=list(ids[mask]),
            marker={"symbol": "circle-open", "size": size + 6, "color": "#e41a1c", "line": {"width": 1.5}},
            hoverinfo="skip"))
    if "chosen" in df and df["chosen"].fillna(False).astype(bool).any():  # a selection (evolab select)
        mask = df["chosen"].fillna(False).astype(bool)
        d = df[mask]
        fig.add_trace(Scatter(
            x=d["x"], y=d["y"], mode="markers", name="chosen (selection)", customdata=list(ids[mask]),
            marker={"symbol": "star", "size": size + 5, "color": "#111111", "line": {"width": 0.5, "color": "white"}},
            hoverinfo="skip"))
    fig.update_layout(title=title, template="plotly_white", hovermode="closest", height=560,
                      xaxis={"title": "UMAP 1", "showticklabels": False, "zeroline": False},
                      yaxis={"title": "UMAP 2", "showticklabels": False, "zeroline": False},
                      legend_title_text=color_by)
    return fig


def selection_scores_figure(dist: pd.DataFrame, score_label: str = "score", *,
                            title: str = "Sort score before and after the selection") -> go.Figure:
    """Overlaid histograms of the sort score of all candidates and of the chosen ones (columns score, set:
    `select.score_distribution`)."""
    if dist is None or dist.empty:
        return empty_figure(title, "No scored candidates")
    fig = go.Figure()
    for name, color in (("all candidates", "#9e9e9e"), ("chosen", "#1f77b4")):
        values = dist.loc[dist["set"] == name, "score"]
        fig.add_trace(go.Histogram(x=values, name=f"{name} ({len(values)})", marker_color=color, opacity=0.7,
                                   nbinsx=30))
    fig.update_layout(title=title, barmode="overlay", template="plotly_white", height=320,
                      xaxis_title=score_label, yaxis_title="nodes")
    return fig


def diversity_figure(div: pd.DataFrame, *, title: str = "Diversity per round") -> go.Figure:
    """Left: mean pairwise cosine distance, mean nearest-neighbour distance and share of
    near-duplicates per round; right: cluster count. One line style per run when `run_id` is present.
    `div` is `novelty.diversity_frame(...)`."""
    if div is None or div.empty:
        return empty_figure(title, "No diversity numbers yet")
    fig = make_subplots(rows=1, cols=2, column_widths=[0.62, 0.38],
                        subplot_titles=("Distances (cosine) and near-duplicate share", "Clusters"))
    series = [("mean_pairwise_distance", "mean pairwise distance", "#1f77b4"),
              ("mean_nn_distance", "mean nearest-neighbour distance", "#ff7f0e"),
              ("near_duplicate_share", "near-duplicate share", "#d62728")]
    groups = [(None, div)] if "run_id" not in div or div["run_id"].nunique() < 2 else list(div.groupby("run_id"))
    dashes = ["solid", "dash", "dot", "dashdot"]
    for k, (run, g) in enumerate(groups):
        g = g.sort_values("round")
        suffix = "" if run is None else f" ({run})"
        for col, label, color in series:
            fig.add_trace(go.Scatter(x=g["round"], y=g[col], name=label + suffix, mode="lines+markers",
                                     line={"color": color, "dash": dashes[k % 4]}, customdata=g["n"],
                                     hovertemplate=f"{label}: %{{y:.3f}}<br>round %{{x}}, n = %{{customdata}}"
                                                   "<extra></extra>"), row=1, col=1)
        fig.add_trace(go.Scatter(x=g["round"], y=g["clusters"], name="clusters" + suffix, mode="lines+markers",
                                 line={"color": "#2ca02c", "dash": dashes[k % 4]}, customdata=g["n"],
                                 hovertemplate="%{y} clusters<br>round %{x}, n = %{customdata}<extra></extra>"),
                      row=1, col=2)
    rounds = sorted(int(r) for r in div["round"].unique())
    fig.update_xaxes(title_text="round", tickmode="array", tickvals=rounds)
    fig.update_yaxes(range=[0, 1.05], row=1, col=1)
    fig.update_yaxes(rangemode="tozero", row=1, col=2)
    fig.update_layout(title=title, template="plotly_white", height=420)
    return fig


# -- cost ----------------------------------------------------------------------------------------------
PURPOSE_COLORS = dict(zip(("evolve", "respond", "equal", "difficulty", "quality", "judge"), qualitative.Safe))


def cost_figure(cost: pd.DataFrame, *, title: str = "Calls, tokens and cost per round") -> go.Figure:
    """Stacked bars per round (calls without a node: "no node"), one colour per purpose: tokens on
    top, cost in USD below. `cost` is `analysis.cost_frame(calls)`."""
    if cost is None or cost.empty:
        return empty_figure(title, "No LLM calls yet")
    df = cost.copy()
    df["label"] = df["round"].map(lambda r: "no node" if pd.isna(r) else f"round {int(r)}")
    order = [f"round {int(r)}" for r in sorted(df["round"].dropna().unique())]
    if df["round"].isna().any():
        order.append("no node")
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                        subplot_titles=("Tokens (prompt + completion)", "Cost (USD)"))
    for purpose in dict.fromkeys(df.sort_values("purpose")["purpose"]):
        g = df[df["purpose"] == purpose].groupby("label")[["tokens", "cost_usd", "calls", "cached"]].sum()
        g = g.reindex(order).fillna(0)
        color = PURPOSE_COLORS.get(purpose)
        custom = np.column_stack([g["calls"], g["cached"]])
        fig.add_trace(go.Bar(x=order, y=g["tokens"], name=purpose, legendgroup=purpose, marker_color=color,
                             customdata=custom,
                             hovertemplate=f"{purpose}: %{{y:,}} tokens<br>%{{customdata[0]}} calls, "
                                           "%{customdata[1]} cached<extra></extra>"), row=1, col=1)
        fig.add_trace(go.Bar(x=order, y=g["cost_usd"], name=purpose, legendgroup=purpose, marker_color=color,
                             showlegend=False, customdata=custom,
                             hovertemplate=f"{purpose}: $%{{y:.4f}}<br>%{{customdata[0]}} calls<extra></extra>"),
                      row=2, col=1)
    fig.update_layout(barmode="stack", title=title, template="plotly_white", height=520,
                      legend_title_text="purpose")
    return fig


def coverage_figure(frame: pd.DataFrame, *, thin: int | None = None,
                    title: str = "Coverage: seeds per skill and difficulty") -> go.Figure:
    """Skills (rows) x difficulty (columns) heat map of a seed set (evolab.seeds.craft.coverage_frame): the count in
    each cell, empty cells crossed out and thin ones marked in the cell's top-right corner (never over the count),
    each mark its own legend entry."""
    if frame is None or frame.empty:
        return empty_figure(title, "No seeds yet")
    skills = [str(s) for s in (frame["skill"].cat.categories if hasattr(frame["skill"], "cat")
                               else dict.fromkeys(frame["skill"]))]
    columns = [str(d) for d in (frame["difficulty"].cat.categories if hasattr(frame["difficulty"], "cat")
                                else dict.fromkeys(frame["difficulty"]))]
    df = frame.assign(skill=frame["skill"].astype(str), difficulty=frame["difficulty"].astype(str))
    grid = df.pivot(index="skill", columns="difficulty", values="count").reindex(index=skills, columns=columns)
    z = grid.fillna(0).to_numpy()
    # Cells at integer positions (ticks carry the names), so a mark can sit in a corner of its cell.
    xs, ys = list(range(len(columns))), list(range(len(skills)))
    fig = go.Figure(go.Heatmap(
        z=z, x=xs, y=ys, colorscale="Blues", zmin=0, text=z.astype(int).astype(str),
        customdata=[[[s, c] for c in columns] for s in skills],
        texttemplate="%{text}", hovertemplate="%{customdata[0]} at difficulty %{customdata[1]}: %{z} seeds"
                                               "<extra></extra>",
        colorbar={"title": "seeds"}, xgap=2, ygap=2, name="seeds"))
    col_at, skill_at = {c: i for i, c in enumerate(columns)}, {s: i for i, s in enumerate(skills)}
    for state, symbol, color, label in (("empty", "x-thin-open", "#c0392b", "empty"),
                                        ("thin", "triangle-up", "#e67e22",
                                         f"thin (< {thin})" if thin is not None else "thin")):
        cells = df[df["state"] == state]
        if len(cells):
            fig.add_trace(go.Scatter(
                x=[col_at[c] + 0.3 for c in cells["difficulty"]], y=[skill_at[s] - 0.25 for s in cells["skill"]],
                mode="markers", name=label, customdata=np.column_stack([cells["skill"], cells["difficulty"]]),
                marker={"symbol": symbol, "size": 8, "color": color, "line": {"width": 2, "color": color}},
                hovertemplate=f"%{{customdata[0]}} at difficulty %{{customdata[1]}}: {state}<extra></extra>"))
    fig.update_layout(title=title, template="plotly_white", height=max(300, 60 + 36 * len(skills)),
                      xaxis={"title": "difficulty (1-10)", "tickmode": "array", "tickvals": xs, "ticktext": columns,
                             "range": [-0.5, len(columns) - 0.5], "showgrid": False, "zeroline": False},
                      yaxis={"title": "skill", "tickmode": "array", "tickvals": ys, "ticktext": skills,
                             "range": [len(skills) - 0.5, -0.5], "showgrid": False, "zeroline": False,
                             "automargin": True},
                      legend={"orientation": "h", "y": -0.2})
    return fig
