"""`evolab slides` on a two-round run made against the OpenAI-compatible stub (Korean seeds among them), judged, then
read back with python-pptx: every slide the issue names, each with its figure or table, numbers from the store, and
Korean text with an East Asian font. A PNG of two slides is rendered through Chromium from the deck itself
(`deck_html`); EVOLAB_DOCS_IMG=docs/img writes it for the docs."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
from analysis_fixtures import HashEmbedder
from conftest import STUB_KEY_ENV
from PIL import Image
from pptx import Presentation
from pptx.oxml.ns import qn
from pptx.util import Inches

from evolab.analysis import frames as analysis
from evolab.cli.main import main
from evolab.export import figures, slides
from evolab.llm.fake import scripted_reply
from evolab.store import Store
from evolab.testing.stub_server import StubServer

pytestmark = pytest.mark.skipif(shutil.which("chromium") is None, reason="needs chromium (make browser)")

SEEDS = ["Explain why the sky is blue.", "Write a short poem about the sea.",
         "서울의 대중교통 체계를 설명하세요.", "Describe how a bicycle gear system works."]
TITLES = ["The seed set", "What evolution did, per round and operation", "What the eliminator dropped, and why",
          "Difficulty and complexity drift", "The diversity map", "One lineage, step by step",
          "The judge's win rates beside the checked-answer share", "What it cost"]


def refusing_sometimes(messages, purpose):
    """The stub's scripted model, which now and then refuses to answer (the refusal rule drops those children)."""
    text = messages[-1]["content"]
    if purpose == "respond" and int(hashlib.sha256(text.encode()).hexdigest(), 16) % 4 == 0:
        return "I'm sorry, but I can't help with that."
    return scripted_reply(messages, purpose)


@pytest.fixture(scope="module")
def deck(tmp_path_factory):

    folder = tmp_path_factory.mktemp("slides")
    seeds, db = folder / "seeds.jsonl", folder / "evolab.db"
    seeds.write_text("".join(json.dumps({"instruction": s, "skill": "general" if i % 2 else "writing"}) + "\n"
                             for i, s in enumerate(SEEDS)), encoding="utf-8")
    mp = pytest.MonkeyPatch()
    mp.setenv(STUB_KEY_ENV, "sk-stub-test-key")
    mp.setattr(analysis, "map_embedder", lambda nodes: HashEmbedder())  # no sentence model in this test
    try:
        with StubServer(refusing_sometimes) as stub:
            endpoint = ["--base-url", stub.base_url, "--model", "gpt-4o-mini", "--api-key-env", STUB_KEY_ENV]
            assert main(["run", str(seeds), "--db", str(db), "--rounds", "2", "--fanout", "2", "--structured", "off",
                         "--name", "부산 demo", *endpoint]) == 0
            assert main(["judge", "--db", str(db), "--rounds", "0,2"]) == 0
        store = Store(db)
        run_id = store.latest_run_id()
        korean = next(n.id for n in store.nodes(run_id) if n.round == 0 and n.language == "ko")
        out = folder / "deck.pptx"
        assert main(["slides", "--db", str(db), "--out", str(out), "--seed", korean]) == 0
        yield {"path": out, "prs": Presentation(str(out)), "store": store, "run_id": run_id, "korean": korean,
               "folder": folder}
        store.close()
    finally:
        mp.undo()


def texts(slide) -> str:
    out = []
    for shape in slide.shapes:
        if shape.has_text_frame:
            out.append(shape.text_frame.text)
        elif shape.has_table:
            out += [c.text for row in shape.table.rows for c in row.cells]
    return "\n".join(out)


def test_every_slide_is_there_with_its_figure_or_table(deck):
    prs = deck["prs"]
    assert prs.slide_width == Inches(13.333) and prs.slide_height == Inches(7.5)
    slides_ = list(prs.slides)
    assert len(slides_) == 1 + len(TITLES)
    assert "부산 demo" in texts(slides_[0]) and "gpt-4o-mini" in texts(slides_[0])
    for slide, title in zip(slides_[1:], TITLES):
        shapes = list(slide.shapes)
        assert shapes[0].text_frame.text == title
        pictures = [s for s in shapes if s.shape_type == 13]
        tables = [s for s in shapes if s.has_table]
        assert pictures or tables, title
        for p in pictures:
            assert p.image.content_type == "image/png" and p.image.size[0] >= 1500, title  # sharp at scale 2
    figures_per_slide = [sum(s.shape_type == 13 for s in slide.shapes) for slide in slides_[1:]]
    assert figures_per_slide == [0, 1, 1, 2, 1, 1, 2, 1]


def test_the_numbers_come_from_the_store(deck):
    store, run_id = deck["store"], deck["run_id"]
    summary = store.run_summary(run_id)
    prs = list(deck["prs"].slides)
    title = texts(prs[0])
    assert f"{summary['by_status'].get('kept', 0)} kept" in title and "4 seeds, 2 rounds" in title
    assert summary["by_rule"].get("refusal"), "the stub's refusals were dropped"
    assert "4 seed instructions" in texts(prs[1]) and "서울의 대중교통" in texts(prs[1])
    elim = texts(prs[3])
    for rule, n in summary["by_rule"].items():
        assert rule in elim and str(n) in elim
    cost = texts(prs[8])
    assert f"{summary['calls']:,} calls" in cost and f"${summary['cost_usd']:.4f}" in cost
    judged = store.judgments()
    assert judged and "Pairwise judge" not in texts(prs[7])  # the judge slide's figure is a picture, not a note


def test_the_lineage_is_told_step_by_step(deck):
    store, run_id = deck["store"], deck["run_id"]
    nodes = analysis.nodes_frame(store, run_id)
    path = slides.lineage_path(nodes, deck["korean"])
    assert path.iloc[0]["id"] == deck["korean"] and list(path["round"]) == list(range(len(path)))
    table = next(s for s in list(deck["prs"].slides)[6].shapes if s.has_table).table
    rows = [[c.text for c in row.cells] for row in table.rows]
    assert rows[0] == ["round", "operation", "difficulty", "instruction"]
    assert [r[1] for r in rows[1:]] == list(path["operation"])
    assert rows[1][3].startswith("서울의 대중교통")


def test_korean_text_names_an_east_asian_font(deck):
    found = 0
    for slide in deck["prs"].slides:
        for shape in slide.shapes:
            frames = [shape.text_frame] if shape.has_text_frame else (
                [c.text_frame for row in shape.table.rows for c in row.cells] if shape.has_table else [])
            for frame in frames:
                for para in frame.paragraphs:
                    for run in para.runs:
                        if any("\uac00" <= ch <= "\ud7a3" for ch in run.text):
                            ea = run._r.find(qn("a:rPr")).find(qn("a:ea"))
                            assert ea is not None and ea.get("typeface") == slides.EAST_ASIAN_FONT
                            found += 1
    assert found >= 3


def test_two_slides_render_to_a_png(deck):
    from playwright.sync_api import sync_playwright

    html = deck["folder"] / "two.html"
    html.write_text(slides.deck_html(deck["path"], [4, 7], width_px=1280), encoding="utf-8")
    png = deck["folder"] / "slides.png"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium"),
                                    args=["--no-sandbox", "--disable-gpu", "--no-first-run"])
        try:
            page = browser.new_page(viewport={"width": 1312, "height": 800})
            page.goto(html.as_uri())
            page.wait_for_function("Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
            page.screenshot(path=str(png), full_page=True)
        finally:
            browser.close()
    with Image.open(png) as im:
        assert im.size[0] == 1312 and im.size[1] >= 2 * 720
    target = os.environ.get("EVOLAB_DOCS_IMG")
    if target:  # regenerate the docs' pictures: EVOLAB_DOCS_IMG=docs/img pytest tests/test_slides.py
        shutil.copy(png, Path(target) / "slides.png")
        nodes = analysis.nodes_frame(deck["store"], deck["run_id"])
        frame = analysis.round_operation_frame(nodes, include_all=True, statuses=figures.SLIDE_STATUSES)
        tree = figures.lineage_figures(nodes, [deck["korean"]])
        chosen = {"figure-drift-difficulty": figures.slide_style(figures.viz.drift_figure(frame, "difficulty")),
                  "figure-lineage-korean": figures.slide_style(next(iter(tree.values())))}
        for path in figures.render(chosen, deck["folder"], "png"):
            with Image.open(path) as im:  # half size: the docs show them in a column
                im.resize((im.width // 2, im.height // 2), Image.LANCZOS).save(Path(target) / path.name)


def test_bad_input_exits_2(deck, capsys, tmp_path):
    db = str(deck["folder"] / "evolab.db")
    assert main(["slides", "--db", db, "--out", str(tmp_path / "deck.ppt")]) == 2
    assert ".pptx" in capsys.readouterr().err
    assert main(["slides", "--db", db, "--out", str(tmp_path / "deck.pptx"), "--seed", "nope"]) == 2
    assert "'nope' is not a seed" in capsys.readouterr().err
    assert main(["slides", "--db", db, "--out", str(tmp_path / "missing" / "deck.pptx")]) == 2
    assert not (tmp_path / "deck.pptx").exists()
