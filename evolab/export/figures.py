"""A run's figures as files: every figure of the Drift, Diversity, Lineage and Compare pages, styled for 16:9
slides (large type, a white background, fonts that render Korean), written as PNG, SVG or PDF through plotly's
static export (kaleido 1.x, which drives a Chromium already on the machine: Debian's `chromium`, or the one
BROWSER_PATH names).

`run_figures` builds the figures (pure: the store in, named plotly figures out); `render` writes them all in one
Chromium session; `write_figures` does both. The slide deck (slides.py) uses the same figures.
"""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from evolab.analysis import frames as analysis
from evolab.analysis import opstats, viz
from evolab.audit import judge, review
from evolab.embeddings import novelty
from evolab.embeddings.embed import threshold_info
from evolab.engine import checking
from evolab.store import Store

if TYPE_CHECKING:  # pragma: no cover
    from evolab.embeddings.embed import Embedder

IMAGE_FORMATS = ("png", "svg", "pdf")
# 16:9 at 1280 x 720 layout pixels; PNGs at scale 2 (2560 x 1440) stay sharp on a projector.
WIDTH, HEIGHT, PNG_SCALE = 1280, 720, 2
# Noto Sans CJK KR (Debian's fonts-noto-cjk, installed with chromium by `make browser`) has Hangul and Latin.
FONT_FAMILY = "Noto Sans CJK KR, Noto Sans KR, Noto Sans, Malgun Gothic, Apple SD Gothic Neo, sans-serif"
DEFAULT_TREES = 3
SLIDE_STATUSES = ("seed", "kept")  # the Drift page's default: the kept pool


class FigureError(Exception):
    """Figures could not be written; the message says what to do."""


def slide_style(fig: go.Figure, title: str | None = None) -> go.Figure:
    """`fig` restyled for a slide: white template, 18 px type (title 26 px), room for the legend."""
    fig.update_layout(template="plotly_white", font={"family": FONT_FAMILY, "size": 18},
                      title={"text": title if title is not None else fig.layout.title.text, "font": {"size": 26},
                             "x": 0.02, "xanchor": "left"},
                      margin={"l": 80, "r": 40, "t": 90, "b": 70}, width=None, height=None)
    fig.update_annotations(font_size=18)
    return fig


def file_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "figure"


# -- the figures of each page ------------------------------------------------------------------------------------
def drift_figures(store: Store, run_id: str, nodes: pd.DataFrame) -> dict[str, go.Figure]:
    frame = analysis.round_operation_frame(nodes, include_all=True, statuses=SLIDE_STATUSES)
    out = {f"drift-{m}": viz.drift_figure(frame, m) for m in analysis.drift_metrics()}
    out["drift-deltas"] = viz.deltas_figure(analysis.deltas_frame(nodes))
    out["eliminations-by-round"] = viz.eliminations_figure(analysis.eliminations_frame(nodes, "round"), "round")
    out["eliminations-by-operation"] = viz.eliminations_figure(analysis.eliminations_frame(nodes, "operation"),
                                                               "operation")
    ops, weights = opstats.run_frames(store, run_id, nodes, by=["round"])
    out["operations"] = viz.operation_stats_figure(ops, "round", title="What each operation did per round")
    if weights is not None:
        out["adaptive-weights"] = viz.adaptive_weights_figure(weights)
    agreement = review.agreement(store, [run_id])
    if not agreement.empty:
        out["agreement"] = viz.agreement_figure(agreement)
    consistency = checking.share_with_intervals(checking.consistent_share(store, [run_id]))
    if not consistency.empty:
        out["checked-answers"] = viz.consistency_figure(consistency)
    return out


def diversity_figures(store: Store, run_id: str, nodes: pd.DataFrame,
                      embedder: "Embedder | None" = None) -> dict[str, go.Figure]:
    """The map coloured by round, operation and status, and the numbers per round (embedding the run: its vectors
    and map are cached in the store, so the app's Diversity page and the report reuse them)."""
    if embedder is None:
        embedder = analysis.map_embedder(nodes)
    frame, vectors = analysis.embedding_map(store, run_id, embedder, nodes=nodes)
    div = novelty.diversity_frame(frame, vectors, threshold=threshold_info(embedder, store).run_map)
    out = {f"diversity-map-{c}": viz.umap_figure(frame, c, webgl=False, title=f"Diversity map by {c}")
           for c in ("round", "operation", "status")}
    out["diversity-per-round"] = viz.diversity_figure(div)
    return out


def busiest_seeds(nodes: pd.DataFrame, n: int = DEFAULT_TREES) -> list[str]:
    """The `n` seeds with the most descendants (ties: the first seeds)."""
    if nodes.empty:
        return []
    sizes = nodes.groupby("root_id", sort=False).size()
    order = {rid: i for i, rid in enumerate(nodes.loc[nodes["round"] == 0, "id"])}
    return sorted(sizes.index, key=lambda r: (-sizes[r], order.get(r, math.inf)))[:n]


def lineage_figures(nodes: pd.DataFrame, seeds: Iterable[str] | None = None) -> dict[str, go.Figure]:
    roots = set(nodes.loc[nodes["round"] == 0, "id"]) if not nodes.empty else set()
    seeds = list(seeds) if seeds else busiest_seeds(nodes)
    missing = [s for s in seeds if s not in roots]
    if missing:
        raise FigureError(f"--seeds {missing[0]!r} is not a seed of this run; seed ids: "
                          + ", ".join(sorted(roots)[:8]) + (" ..." if len(roots) > 8 else ""))
    out = {}
    for i, seed in enumerate(seeds, 1):
        tree = nodes[nodes["root_id"] == seed]
        text = " ".join(str(tree.loc[tree["id"] == seed, "instruction"].iloc[0]).split())
        out[f"lineage-{i}-{file_name(seed)}"] = viz.lineage_figure(
            tree, webgl=False, title=f"Lineage: {text[:60]}{'…' if len(text) > 60 else ''}")
    return out


def pool_means(pool: pd.DataFrame, metrics: list[str]) -> list[tuple[float, float, float, int]]:
    return [analysis.mean_ci(pool[m].dropna(), scale=analysis.metric_scale(m)) if m in pool else
            (math.nan, math.nan, math.nan, 0) for m in metrics]


def compare_figure(sides: list[tuple[str, pd.DataFrame]], *, title: str) -> go.Figure:
    """Metric means of two pools side by side, one panel per metric, with 95% intervals."""
    metrics = list(analysis.drift_metrics())
    fig = make_subplots(rows=1, cols=len(metrics), subplot_titles=[viz.metric_label(m) for m in metrics])
    colours = ("#636efa", "#ef553b")
    for (label, pool), colour in zip(sides, colours):
        for col, (m, (mean, lo, hi, n)) in enumerate(zip(metrics, pool_means(pool, metrics)), 1):
            err = None if math.isnan(lo) else {"type": "data", "symmetric": False, "array": [hi - mean],
                                               "arrayminus": [mean - lo]}
            fig.add_trace(go.Bar(x=[label], y=[mean], error_y=err, marker_color=colour, name=label,
                                 showlegend=col == 1, hovertemplate=f"{label}: %{{y:.2f}} (n={n})<extra></extra>"),
                          row=1, col=col)
    fig.update_layout(title=title, barmode="group")
    return fig


def judge_figure(summaries: list[tuple[str, dict]], *, title: str = "Pairwise judge: A against B") -> go.Figure:
    """Win / tie / lose / unreadable shares per comparison, as stacked bars (the judge asked twice, swapped)."""
    if not summaries:
        return viz.empty_figure(title, "Not judged yet: python -m evolab judge --rounds 0,N")
    fig = go.Figure()
    labels = [label for label, _ in summaries]
    for key, name, colour in (("win", "A wins", "#00cc96"), ("tie", "tie", "#b6b6b6"), ("lose", "B wins", "#ef553b"),
                              ("unknown", "unreadable", "#fecb52")):
        fig.add_trace(go.Bar(y=labels, x=[s[f"{key}_rate"] if f"{key}_rate" in s else s[key] / max(s["n"], 1)
                                          for _, s in summaries],
                             orientation="h", name=name, marker_color=colour,
                             text=[f"{s[key]}" for _, s in summaries], textposition="inside"))
    fig.update_layout(title=title, barmode="stack", xaxis={"tickformat": ".0%", "range": [0, 1]})
    return fig


def compare_figures(store: Store, run_id: str, nodes: pd.DataFrame, against: str | None = None) -> dict[str, go.Figure]:
    """The Compare page's numbers as figures: metric means of the first and last round (or of two runs) and the
    judge's verdicts stored for them."""
    pool = nodes[nodes["status"].isin(SLIDE_STATUSES)] if not nodes.empty else nodes
    if against:
        other = analysis.nodes_frame(store, against)
        other = other[other["status"].isin(SLIDE_STATUSES)] if not other.empty else other
        sides = [(f"A: {run_id}", pool), (f"B: {against}", other)]
        comparisons = [judge.runs_comparison(run_id, against)]
        title = f"Run {run_id} against run {against}"
    else:
        rounds = sorted(int(r) for r in pool["round"].unique()) if not pool.empty else [0]
        first, last = rounds[0], rounds[-1]
        sides = [(f"round {first}", pool[pool["round"] == first]), (f"round {last}", pool[pool["round"] == last])]
        comparisons = [judge.rounds_comparison(run_id, first, last)]
        title = f"Round {first} against round {last} (seeds and kept nodes)"
    out = {"compare-means": compare_figure(sides, title=title)}
    summaries = []
    for comparison in comparisons:
        rows = store.judgments(comparison)
        if rows:
            summaries.append((comparison, judge.summarize_judgments(rows)))
    out["compare-judge"] = judge_figure(summaries)
    return out


def cost_figures(store: Store, run_id: str, nodes: pd.DataFrame) -> dict[str, go.Figure]:
    return {"cost": viz.cost_figure(analysis.cost_frame(analysis.calls_frame(store, run_id, nodes)))}


def run_figures(store: Store, run_id: str, *, seeds: Iterable[str] | None = None, against: str | None = None,
                embedder: "Embedder | None" = None, progress: Callable[[str], None] | None = None,
                ) -> dict[str, go.Figure]:
    """Every figure of the run's Drift, Diversity, Lineage and Compare pages (and the cost), named for files,
    styled for slides. A Diversity map that cannot be computed (no embedding model) is left out, with a note."""
    say = progress or (lambda _m: None)
    if against is not None and store.get_run(against) is None:
        raise FigureError(f"--against {against!r}: no such run in {store.path}.")
    nodes = analysis.nodes_frame(store, run_id)
    if nodes.empty:
        raise FigureError(f"Run {run_id} has no nodes yet: nothing to draw.")
    figs = {**drift_figures(store, run_id, nodes), **lineage_figures(nodes, seeds),
            **compare_figures(store, run_id, nodes, against), **cost_figures(store, run_id, nodes)}
    try:
        say("embedding the run for the Diversity map (cached in the store)")
        figs.update(diversity_figures(store, run_id, nodes, embedder))
    except (ImportError, OSError, RuntimeError, ValueError) as e:
        say(f"the Diversity figures are left out: embedding failed ({e}); set EVOLAB_EMBED_MODEL or "
            "EVOLAB_EMBED_BASE_URL")
    return {name: slide_style(fig) for name, fig in figs.items()}


def render(figs: dict[str, go.Figure], out: Path, formats: str | Iterable[str] = "png", *, width: int = WIDTH,
           height: int = HEIGHT) -> list[Path]:
    """Write {name: figure} as `out`/name.fmt for each format, all in one Chromium session; the paths written."""
    formats = [formats] if isinstance(formats, str) else list(formats)
    return render_sized([(fig, Path(out) / f"{name}.{fmt}", width, height) for fmt in formats
                         for name, fig in figs.items()])


def render_sized(items: list[tuple[go.Figure, Path, int, int]]) -> list[Path]:
    """Write each (figure, path, width, height) as an image in one Chromium session, its format the path's suffix
    (png, svg, pdf), at width x height layout pixels (PNGs at scale 2; SVG and PDF are vector)."""
    for _, path, _, _ in items:
        fmt = path.suffix.lstrip(".")
        if fmt not in IMAGE_FORMATS:
            raise FigureError(f"--format {fmt!r}: choose from {', '.join(IMAGE_FORMATS)}.")
        path.parent.mkdir(parents=True, exist_ok=True)
    if not items:
        return []
    # kaleido (and choreographer, which drives Chromium): imported where figures are rendered, not at CLI start
    import kaleido
    from kaleido.errors import ChromeNotFoundError  # (the same library, as above)

    specs = [{"fig": fig, "path": str(path), "opts": {"format": path.suffix[1:], "width": w, "height": h,
                                                      "scale": PNG_SCALE if path.suffix == ".png" else 1}}
             for fig, path, w, h in items]
    try:
        # mathjax=False: no script from a CDN (evolab's figures use no LaTeX), so export works offline.
        # n=2: two tabs render at once (most of the time is the browser's, per figure).
        kaleido.write_fig_from_object_sync(specs, kopts={"mathjax": False, "n": 2}, cancel_on_error=True)
    except ChromeNotFoundError:
        raise FigureError("Static figures need Chromium: install it (Debian: apt-get install chromium "
                          "fonts-noto-cjk; `make browser` does it) or point BROWSER_PATH at a Chrome.") from None
    missing = [str(p) for _, p, _, _ in items if not p.exists() or p.stat().st_size == 0]
    if missing:
        raise FigureError(f"Chromium wrote no image for {missing[0]}.")
    return [p for _, p, _, _ in items]


def write_figures(store: Store, run_id: str, out: str | Path, fmt: str = "png", *, seeds: Iterable[str] | None = None,
                  against: str | None = None, embedder: "Embedder | None" = None,
                  progress: Callable[[str], None] | None = None) -> list[Path]:
    """Every figure of the run as a file in the folder `out` (created when missing); the paths written."""
    if fmt not in IMAGE_FORMATS:
        raise FigureError(f"--format {fmt!r}: choose from {', '.join(IMAGE_FORMATS)}.")
    figs = run_figures(store, run_id, seeds=seeds, against=against, embedder=embedder, progress=progress)
    (progress or (lambda _m: None))(f"rendering {len(figs)} figures through Chromium")
    return render(figs, Path(out), fmt)
