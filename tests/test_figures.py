"""`evolab figures`: every figure of the Drift, Diversity, Lineage and Compare pages written as PNG, SVG and PDF
through kaleido and Debian's chromium, sized for 16:9 slides, with Korean text kept as text."""
from __future__ import annotations

import re
import shutil

import pytest
from analysis_fixtures import HashEmbedder, build_run
from PIL import Image

from evolab.analysis import frames as analysis
from evolab.cli.main import main
from evolab.export import figures
from evolab.store import Store

pytestmark = pytest.mark.skipif(shutil.which("chromium") is None, reason="needs chromium (make browser)")

PAGES = ("drift-", "eliminations-", "operations", "diversity-", "lineage-", "compare-", "cost")


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    folder = tmp_path_factory.mktemp("figures")
    store = Store(folder / "evolab.db")
    run = build_run(store, rounds=2)
    figs = figures.run_figures(store, run.run_id, embedder=HashEmbedder())  # fills the map's cache in the store
    yield {"store": store, "run_id": run.run_id, "folder": folder, "figs": figs}
    store.close()


def test_every_page_has_its_figures(sample):
    names = list(sample["figs"])
    for prefix in PAGES:
        assert any(n.startswith(prefix) for n in names), prefix
    metrics = analysis.drift_metrics()
    assert {f"drift-{m}" for m in metrics} <= set(names)
    assert {"diversity-map-round", "diversity-map-operation", "diversity-map-status", "diversity-per-round"} <= set(names)
    assert sum(n.startswith("lineage-") for n in names) == figures.DEFAULT_TREES
    for fig in sample["figs"].values():  # styled for slides: large type in a font with Hangul
        assert fig.layout.font.size >= 18 and "Noto Sans CJK KR" in fig.layout.font.family


def test_the_command_writes_every_figure(sample, monkeypatch, capsys):
    """Every figure, as SVG: rendering takes about a second a figure here, so the suite renders every figure once (SVG
    is the quickest) and each kind of figure as PNG and PDF below; the deck's test renders PNGs too."""
    monkeypatch.setattr(analysis, "map_embedder", lambda nodes: HashEmbedder())  # the cached map's model
    out = sample["folder"] / "svg"
    assert main(["figures", "--db", str(sample["folder"] / "evolab.db"), "--run", sample["run_id"], "--out", str(out),
                 "--format", "svg"]) == 0
    assert sorted(p.stem for p in out.glob("*.svg")) == sorted(sample["figs"])
    for path in out.glob("*.svg"):
        svg = path.read_text(encoding="utf-8")
        assert svg.startswith("<svg") and 'viewBox="0 0 1280 720"' in svg, path.name
        assert svg.count("<path") + svg.count("<text") > 4, path.name  # something is drawn (an empty figure: its note)
    assert f"wrote {len(sample['figs'])} figures (svg)" in capsys.readouterr().err


def test_png_and_pdf_of_each_kind_of_figure(sample):
    store, run_id = sample["store"], sample["run_id"]
    nodes = analysis.nodes_frame(store, run_id)
    korean = nodes.loc[(nodes["round"] == 0) & (nodes["language"] == "ko"), "id"].iloc[0]
    tree = figures.lineage_figures(nodes, [korean])
    tree_name, tree_fig = next(iter(tree.items()))
    chosen = {tree_name: figures.slide_style(tree_fig), "diversity-map-round": sample["figs"]["diversity-map-round"]}
    out = sample["folder"] / "raster"
    items = [(fig, out / f"{name}.{fmt}", figures.WIDTH, figures.HEIGHT) for fmt in ("png", "pdf")
             for name, fig in chosen.items()]
    svg_path = out / f"{tree_name}.svg"
    assert len(figures.render_sized(items + [(chosen[tree_name], svg_path, 1280, 720)])) == 5  # one Chromium session
    for name in chosen:
        with Image.open(out / f"{name}.png") as im:  # 16:9 at scale 2, and something is drawn
            assert im.size == (figures.WIDTH * figures.PNG_SCALE, figures.HEIGHT * figures.PNG_SCALE)
            assert len(im.convert("L").resize((64, 36)).getcolors(4096)) > 4, name
        pdf = (out / f"{name}.pdf").read_bytes()
        assert pdf.startswith(b"%PDF-") and re.search(rb"/MediaBox\s*\[", pdf), name
    assert "서울의 대중교통" in svg_path.read_text(encoding="utf-8")  # Hangul kept as text in the font that has it


def test_bad_input_exits_2(sample, capsys, tmp_path):
    db = str(sample["folder"] / "evolab.db")
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    for args, words in ((["--out", str(a_file)], "is a file"),
                        (["--out", str(tmp_path / "no" / "such" / "dir")], "does not exist"),
                        (["--out", str(tmp_path / "f"), "--seeds", "nope"], "'nope' is not a seed"),
                        (["--out", str(tmp_path / "f"), "--against", "nope"], "--against 'nope'")):
        assert main(["figures", "--db", db, *args]) == 2, args
        assert words in capsys.readouterr().err, args
    with pytest.raises(SystemExit) as e:
        main(["figures", "--db", db, "--out", str(tmp_path / "g"), "--format", "gif"])
    assert e.value.code == 2


def test_without_chromium_the_message_says_what_to_install(sample, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no browser on PATH
    monkeypatch.setenv("BROWSER_PATH", str(tmp_path / "no-chrome"))
    one = dict(list(sample["figs"].items())[:1])
    with pytest.raises(figures.FigureError, match="apt-get install chromium"):
        figures.render(one, tmp_path / "out", "png")
