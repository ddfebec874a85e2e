"""A slide deck (.pptx, python-pptx) that tells what a run did, every number and figure read from the store:
a title slide, the seed set, what evolution did per round and operation, what the eliminator dropped and why,
difficulty and complexity drift, the diversity map, one lineage told step by step with its rewrites, the judge's
win rates beside the checked-answer share, and the cost. Figures are the app's (figures.py, styled for slides)
as PNG pictures; text runs name a CJK font for East Asian text, so Korean renders in PowerPoint, Keynote and
LibreOffice.

`deck_html` lays a written deck out as HTML (shapes at their positions, pictures, tables, text) so a browser can
show or screenshot its slides without an office suite: the docs' picture of two slides is made that way.
"""
from __future__ import annotations

import base64
import html
import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import pandas as pd

from evolab.analysis import frames as analysis
from evolab.analysis import opstats
from evolab.audit import judge
from evolab.embeddings import novelty
from evolab.embeddings.embed import threshold_info
from evolab.engine import checking
from evolab.export import figures
from evolab.llm.base import redact_url
from evolab.store import Store

if TYPE_CHECKING:  # pragma: no cover
    from pptx.presentation import Presentation

    from evolab.embeddings.embed import Embedder

# python-pptx's units (pptx.util.Inches and Pt are these ints): python-pptx itself is imported only where a deck is
# built or read, so the CLI does not load its OOXML classes to start.
EMU_PER_INCH, EMU_PER_POINT = 914_400, 12_700


def inches(x: float) -> int:
    return int(x * EMU_PER_INCH)


def points(x: float) -> int:
    return int(x * EMU_PER_POINT)

SLIDE_W, SLIDE_H = inches(13.333), inches(7.5)  # 16:9
MARGIN = inches(0.5)
TITLE_H = inches(0.9)
EAST_ASIAN_FONT = "Noto Sans CJK KR"
LATIN_FONT = "Noto Sans"
STEP_TEXT = 110  # characters of a rewrite shown in the lineage table


@dataclass
class _Figure:
    """A figure placed on a slide: rendered at the slot's aspect so it fills it."""
    fig: object
    left: int
    top: int
    width: int
    height: int
    path: Path | None = None

    def pixels(self) -> tuple[int, int]:
        width = 1000 if self.width > SLIDE_W / 2 else 760  # layout pixels: type stays readable when scaled down
        return width, round(width * self.height / self.width)


class _Deck:
    def __init__(self) -> None:
        from pptx import Presentation  # python-pptx: heavy (lxml's OOXML classes), only when a deck is built

        self.prs = Presentation()
        self.prs.slide_width, self.prs.slide_height = SLIDE_W, SLIDE_H
        self.blank = self.prs.slide_layouts[6]
        self.pending: list[tuple[object, _Figure]] = []

    def slide(self, title: str, subtitle: str | None = None):
        slide = self.prs.slides.add_slide(self.blank)
        self.text(slide, title, MARGIN, inches(0.3), SLIDE_W - 2 * MARGIN, TITLE_H, size=30, bold=True)
        if subtitle:
            self.text(slide, subtitle, MARGIN, inches(0.95), SLIDE_W - 2 * MARGIN, inches(0.5), size=15,
                      color=(0x55, 0x55, 0x55))
        return slide

    @staticmethod
    def text(slide, text: str | list[str], left, top, width, height, *, size: int = 18, bold: bool = False,
             color: tuple[int, int, int] | None = None):
        box = slide.shapes.add_textbox(left, top, width, height)
        frame = box.text_frame
        frame.word_wrap = True
        for i, line in enumerate([text] if isinstance(text, str) else text):
            para = frame.paragraphs[0] if i == 0 else frame.add_paragraph()
            run = para.add_run()
            run.text = line
            _font(run, size, bold, color)
        return box

    def figure(self, slide, fig, left, top, width, height) -> None:
        """A figure's picture goes here once every figure of the deck is rendered (one Chromium session)."""
        self.pending.append((slide, _Figure(fig, left, top, width, height)))

    @staticmethod
    def table(slide, frame: pd.DataFrame, left, top, width, *, size: int = 13, max_rows: int = 14):
        frame = frame.head(max_rows)
        rows, cols = len(frame) + 1, len(frame.columns)
        shape = slide.shapes.add_table(rows, cols, left, top, width, inches(0.36) * rows)
        table = shape.table
        for c, name in enumerate(frame.columns):
            _cell(table.cell(0, c), str(name), size, bold=True)
        for r, row in enumerate(frame.itertuples(index=False), 1):
            for c, value in enumerate(row):
                _cell(table.cell(r, c), _fmt(value), size)
        return shape

    def place_figures(self, folder: Path) -> None:
        items = []
        for i, (_, spot) in enumerate(self.pending):
            spot.path = folder / f"figure-{i}.png"
            w, h = spot.pixels()
            items.append((figures.slide_style(spot.fig), spot.path, w, h))
        figures.render_sized(items)
        for slide, spot in self.pending:
            slide.shapes.add_picture(str(spot.path), spot.left, spot.top, spot.width, spot.height)


def _font(run, size: int, bold: bool = False, color: tuple[int, int, int] | None = None) -> None:
    from pptx.dml.color import RGBColor  # python-pptx: loaded by _Deck already (heavy, only for decks)
    from pptx.oxml.ns import qn  # python-pptx, as above

    run.font.size = points(size)
    run.font.bold = bold
    run.font.name = LATIN_FONT
    if color:
        run.font.color.rgb = RGBColor(*color)
    r_pr = run._r.get_or_add_rPr()
    for old in r_pr.findall(qn("a:ea")):
        r_pr.remove(old)
    ea = r_pr.makeelement(qn("a:ea"), {"typeface": EAST_ASIAN_FONT})
    latin = r_pr.find(qn("a:latin"))
    (latin.addnext(ea) if latin is not None else r_pr.append(ea))


def _cell(cell, text: str, size: int, bold: bool = False) -> None:
    cell.text = ""
    para = cell.text_frame.paragraphs[0]
    run = para.add_run()
    run.text = text
    _font(run, size, bold)
    cell.margin_left = cell.margin_right = inches(0.05)
    cell.margin_top = cell.margin_bottom = inches(0.02)


def _fmt(value: object) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def _short(text: object, n: int) -> str:
    s = " ".join(str(text or "").split())
    return s if len(s) <= n else s[: n - 1] + "…"


# -- the story -----------------------------------------------------------------------------------------------------
def lineage_path(nodes: pd.DataFrame, seed: str) -> pd.DataFrame:
    """The steps from `seed` to its deepest kept descendant (the latest such when tied), seed first."""
    tree = nodes[nodes["root_id"] == seed]
    kept = tree[tree["status"].isin(["kept", "seed"])]
    end = kept.sort_values(["round", "created_at"]).iloc[-1]
    by_id = tree.set_index("id")
    steps, current = [], end["id"]
    while isinstance(current, str) and current in by_id.index:
        steps.append(by_id.loc[current])
        current = by_id.loc[current, "parent_id"]
    return pd.DataFrame(steps[::-1]).reset_index(names="id")


def deepest_seed(nodes: pd.DataFrame) -> str:
    kept = nodes[nodes["status"].isin(["kept", "seed"])]
    depth = kept.groupby("root_id")["round"].max()
    order = {rid: i for i, rid in enumerate(nodes.loc[nodes["round"] == 0, "id"])}
    return sorted(depth.index, key=lambda r: (-depth[r], order.get(r, math.inf)))[0]


def build_deck(store: Store, run_id: str, *, seed: str | None = None, embedder: "Embedder | None" = None,
               progress: Callable[[str], None] | None = None) -> Presentation:
    say = progress or (lambda _m: None)
    overview = analysis.run_overview(store, run_id)
    run = store.get_run(run_id)
    nodes = analysis.nodes_frame(store, run_id)
    if nodes.empty:
        raise figures.FigureError(f"Run {run_id} has no nodes yet: nothing to present.")
    if seed is not None and seed not in set(nodes.loc[nodes["round"] == 0, "id"]):
        raise figures.FigureError(f"--seed {seed!r} is not a seed of run {run_id}.")
    calls = analysis.calls_frame(store, run_id, nodes)
    deck = _Deck()
    body_top = inches(1.5)
    body_h = SLIDE_H - body_top - inches(0.4)
    wide = inches(8.2)
    side_left = MARGIN + wide + inches(0.25)
    side_w = SLIDE_W - side_left - MARGIN
    by_status = overview["by_status"]

    # 1. title
    slide = deck.prs.slides.add_slide(deck.blank)
    deck.text(slide, run["name"] or run_id, MARGIN, inches(2.2), SLIDE_W - 2 * MARGIN, inches(1.2), size=40, bold=True)
    deck.text(slide, [f"Evol-Instruct with {overview['model']} at {redact_url(overview['base_url'])}",
                      f"{overview['seeds']} seeds, {overview['rounds']} rounds: {by_status.get('kept', 0)} kept, "
                      f"{by_status.get('eliminated', 0)} eliminated, {by_status.get('failed', 0)} failed",
                      f"run {run_id} · {time.strftime('%Y-%m-%d', time.gmtime(overview['created_at']))} · made with "
                      "evolab"], MARGIN, inches(3.6), SLIDE_W - 2 * MARGIN, inches(1.6), size=20,
              color=(0x44, 0x44, 0x44))

    # 2. seeds
    seeds = nodes[nodes["round"] == 0]
    slide = deck.slide("The seed set", f"{len(seeds)} seed instructions"
                       + (f" from the seed set {run['seed_set']}" if run.get("seed_set") else ""))
    counts = pd.DataFrame({"language": seeds["language"].fillna("?")}).value_counts().reset_index()
    counts.columns = ["language", "seeds"]
    deck.table(slide, counts, MARGIN, body_top, inches(3.0), size=14)
    skills = seeds["skill"].fillna("(not tagged)").value_counts().reset_index()
    skills.columns = ["skill", "seeds"]
    deck.table(slide, skills, MARGIN, body_top + inches(0.4) * (len(counts) + 2), inches(3.0), size=14, max_rows=8)
    examples = pd.DataFrame({"seed": [_short(t, 90) for t in seeds["instruction"]],
                             "difficulty": seeds["difficulty"].tolist()})
    deck.table(slide, examples, inches(3.9), body_top, SLIDE_W - inches(3.9) - MARGIN, size=13, max_rows=10)

    # 3. evolution per round and operation
    ops, _ = opstats.run_frames(store, run_id, nodes, by=["round"])
    slide = deck.slide("What evolution did, per round and operation",
                       "Children tried, kept share, difficulty change from parent to child (95% CI), calls per kept child")
    deck.figure(slide, figures.viz.operation_stats_figure(ops, "round", title=""), MARGIN, body_top, wide, body_h)
    summary = opstats.summary_table(opstats.operation_stats(nodes, calls, by=()))
    if not summary.empty:
        deck.table(slide, summary[["operation", "tried", "kept", "kept %"]], side_left, body_top, side_w, size=13)

    # 4. eliminations
    evolved = int((nodes["round"] > 0).sum())
    slide = deck.slide("What the eliminator dropped, and why",
                       f"{evolved} evolved instructions; rules run cheapest first, the first that fails drops the child")
    deck.figure(slide, figures.viz.eliminations_figure(analysis.eliminations_frame(nodes, "round"), "round", title=""),
                MARGIN, body_top, wide, body_h)
    rules = pd.DataFrame(sorted(overview["by_rule"].items(), key=lambda kv: -kv[1]), columns=["rule", "dropped"])
    if rules.empty:
        deck.text(slide, "Nothing was eliminated.", side_left, body_top, side_w, inches(1))
    else:
        rules["share"] = (rules["dropped"] / max(evolved, 1)).map(lambda v: f"{v:.0%}")
        deck.table(slide, rules, side_left, body_top, side_w, size=14)

    # 5. drift
    frame = analysis.round_operation_frame(nodes, include_all=True, statuses=figures.SLIDE_STATUSES)
    rounds = analysis.round_frame(nodes[nodes["status"].isin(figures.SLIDE_STATUSES)], metrics=["difficulty", "cx_index"])
    means = ", ".join(f"round {int(r['round'])}: {r['difficulty_mean']:.1f}" for _, r in rounds.iterrows()
                      if pd.notna(r.get("difficulty_mean")))
    slide = deck.slide("Difficulty and complexity drift", f"Seeds and kept nodes, means with 95% CIs. Difficulty "
                       f"(1-10) by round: {means or 'not scored'}")
    half = (SLIDE_W - 2 * MARGIN - inches(0.2)) / 2
    deck.figure(slide, figures.viz.drift_figure(frame, "difficulty"), MARGIN, body_top, half, body_h)
    deck.figure(slide, figures.viz.drift_figure(frame, "cx_index"), MARGIN + half + inches(0.2), body_top, half, body_h)

    # 6. diversity
    slide = deck.slide("The diversity map", "One UMAP map of every instruction of the run; near-duplicates ringed")
    try:
        say("embedding the run for the diversity map (cached in the store)")
        if embedder is None:
            embedder = analysis.map_embedder(nodes)
        emap, vectors = analysis.embedding_map(store, run_id, embedder, nodes=nodes)
        div = novelty.diversity_frame(emap, vectors, threshold=threshold_info(embedder, store).run_map)
        deck.figure(slide, figures.viz.umap_figure(emap, "round", webgl=False, title=""), MARGIN, body_top, wide, body_h)
        table = div[[c for c in ("round", "n", "mean_pairwise_distance", "near_duplicate_share") if c in div]]
        deck.table(slide, table.rename(columns={"mean_pairwise_distance": "mean distance",
                                                "near_duplicate_share": "near-dup share"}), side_left, body_top,
                   side_w, size=13)
    except (ImportError, OSError, RuntimeError, ValueError) as e:
        deck.text(slide, f"The map could not be computed: embedding failed ({e}). Set EVOLAB_EMBED_MODEL or "
                         "EVOLAB_EMBED_BASE_URL and write the deck again.", MARGIN, body_top, SLIDE_W - 2 * MARGIN,
                  inches(1.5))

    # 7. one lineage, step by step
    seed = seed or deepest_seed(nodes)
    steps = lineage_path(nodes, seed)
    tree = nodes[nodes["root_id"] == seed]
    slide = deck.slide("One lineage, step by step", f"{len(tree)} nodes grew from this seed; the path to its deepest "
                       "kept rewrite")
    deck.figure(slide, figures.viz.lineage_figure(tree, webgl=False, title=""), MARGIN, body_top, inches(5.2), body_h)
    table = pd.DataFrame({"round": steps["round"].astype(int), "operation": steps["operation"],
                          "difficulty": steps["difficulty"], "instruction": [_short(t, STEP_TEXT)
                                                                             for t in steps["instruction"]]})
    deck.table(slide, table, MARGIN + inches(5.4), body_top, SLIDE_W - inches(5.4) - 2 * MARGIN, size=12, max_rows=8)

    # 8. judge beside checked answers
    rows = [r for r in store.judgments() if r["comparison"].startswith(run_id) or f"-vs-{run_id}" in r["comparison"]]
    comparisons = list(dict.fromkeys(r["comparison"] for r in rows))
    summaries = [(c, judge.summarize_judgments([r for r in rows if r["comparison"] == c])) for c in comparisons]
    consistency = checking.share_with_intervals(checking.consistent_share(store, [run_id]))
    slide = deck.slide("The judge's win rates beside the checked-answer share",
                       "A judge's preference is not correctness: checked answers ask whether the number comes back "
                       "when asked again")
    deck.figure(slide, figures.judge_figure(summaries, title="Pairwise judge (asked twice, answers swapped)"),
                MARGIN, body_top, half, body_h)
    deck.figure(slide, figures.viz.consistency_figure(consistency), MARGIN + half + inches(0.2), body_top, half, body_h)

    # 9. cost
    cost = analysis.cost_frame(calls)
    slide = deck.slide("What it cost", f"{overview['calls']:,} calls ({overview['cached_calls']:,} from the cache), "
                       f"{overview['tokens']:,} tokens, ${overview['cost_usd']:.4f}"
                       + ("" if overview["price_known"] else " (price unknown: counted as 0)"))
    deck.figure(slide, figures.viz.cost_figure(cost, title=""), MARGIN, body_top, wide, body_h)
    if not cost.empty:
        per = cost.groupby("purpose", sort=False)[["calls", "tokens", "cost_usd"]].sum().reset_index()
        per["cost_usd"] = per["cost_usd"].map(lambda v: f"${v:.4f}")
        deck.table(slide, per.rename(columns={"cost_usd": "cost"}), side_left, body_top, side_w, size=14)

    say(f"rendering {len(deck.pending)} figures through Chromium")
    with tempfile.TemporaryDirectory(prefix="evolab-slides-") as tmp:
        deck.place_figures(Path(tmp))
    return deck.prs


def write_deck(store: Store, run_id: str, out: str | Path, *, seed: str | None = None,
               embedder: "Embedder | None" = None, progress: Callable[[str], None] | None = None) -> Path:
    """Write the deck to `out` (a temporary file renamed at the end) and return its path."""
    prs = build_deck(store, run_id, seed=seed, embedder=embedder, progress=progress)
    out = Path(out)
    tmp = out.with_name(f".{out.name}.part")
    try:
        prs.save(str(tmp))
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def deck_bytes(store: Store, run_id: str, **kwargs) -> bytes:
    """The deck as bytes (the Export page's download button)."""
    with tempfile.TemporaryDirectory(prefix="evolab-deck-") as tmp:
        return write_deck(store, run_id, Path(tmp) / "deck.pptx", **kwargs).read_bytes()


# -- a browser's view of a deck ------------------------------------------------------------------------------------
def deck_html(path: str | Path, slides: list[int] | None = None, *, width_px: int = 1280) -> str:
    """The deck's slides (1-based numbers; default all) as one HTML page, each slide a box of `width_px` with its
    shapes at their positions: pictures, tables and text at their sizes. For previews and the docs' screenshots."""
    from pptx import Presentation  # python-pptx: heavy, only when a deck is read

    prs = Presentation(str(path))
    scale = width_px / prs.slide_width
    height_px = round(prs.slide_height * scale)

    def box(shape) -> str:
        return (f"left:{shape.left * scale:.1f}px;top:{shape.top * scale:.1f}px;width:{shape.width * scale:.1f}px;"
                f"height:{shape.height * scale:.1f}px")

    def runs(paragraphs) -> str:
        out = []
        for p in paragraphs:
            spans = []
            for r in p.runs:
                size = (r.font.size or points(18)) * scale  # EMU -> px, as every position
                weight = "700" if r.font.bold else "400"
                colour = f"#{r.font.color.rgb}" if r.font.color and r.font.color.type is not None else "#222"
                spans.append(f"<span style='font-size:{size:.1f}px;font-weight:{weight};color:{colour}'>"
                             f"{html.escape(r.text)}</span>")
            out.append(f"<p>{''.join(spans) or '&nbsp;'}</p>")
        return "".join(out)

    parts = []
    chosen = slides or list(range(1, len(prs.slides) + 1))
    for number in chosen:
        slide = prs.slides[number - 1]
        shapes = []
        for shape in slide.shapes:
            if shape.shape_type == 13:  # a picture
                data = base64.b64encode(shape.image.blob).decode()
                shapes.append(f"<img style='position:absolute;{box(shape)}' src='data:{shape.image.content_type};"
                              f"base64,{data}'>")
            elif shape.has_table:
                rows = "".join("<tr>" + "".join(f"<td>{runs(c.text_frame.paragraphs)}</td>" for c in row.cells)
                               + "</tr>" for row in shape.table.rows)
                shapes.append(f"<table style='position:absolute;{box(shape)};height:auto'>{rows}</table>")
            elif shape.has_text_frame:
                shapes.append(f"<div class='t' style='position:absolute;{box(shape)}'>"
                              f"{runs(shape.text_frame.paragraphs)}</div>")
        parts.append(f"<div class='slide' style='width:{width_px}px;height:{height_px}px'>{''.join(shapes)}</div>")
    css = ("body{margin:0;background:#ddd;font-family:'Noto Sans','Noto Sans CJK KR',sans-serif}"
           ".slide{position:relative;background:#fff;margin:16px;box-shadow:0 1px 4px #888;overflow:hidden}"
           "p{margin:0 0 .25em 0;line-height:1.2}table{border-collapse:collapse}"
           "td{border:1px solid #c9d3e6;padding:1px 4px;vertical-align:top}tr:first-child td{background:#4472c4}"
           "tr:first-child td span{color:#fff!important}tr:nth-child(even) td{background:#e9eef7}")
    return f"<!DOCTYPE html><html><head><meta charset='utf-8'><style>{css}</style></head><body>{''.join(parts)}</body></html>"
