import re
from pathlib import Path

import pytest
from analysis_fixtures import HashEmbedder, build_run
from plotly.offline import get_plotlyjs

from evolab.analysis.report import write_report
from evolab.embeddings import embed
from evolab.schema import RunConfig, Seed

ROOT = Path(__file__).resolve().parents[1]
EXTERNAL_SCRIPT = re.compile(r"<script[^>]*\bsrc\s*=\s*[\"']?\s*(?:https?:)?//", re.IGNORECASE)
FIGURES = 13  # lineage, 4 drift, deltas, operations, 2 eliminations, 2 UMAP, diversity, cost


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    from evolab.store import Store

    folder = tmp_path_factory.mktemp("report")
    store = Store(folder / "evolab.db")
    sample = build_run(store, rounds=2)
    emb = HashEmbedder()
    path = write_report(store, sample.run_id, folder / "out" / "report.html", embedder=emb)
    yield {"store": store, "sample": sample, "path": path, "html": path.read_text(encoding="utf-8"),
           "embedder": emb, "folder": folder}
    store.close()


def test_report_is_one_self_contained_file(report):
    html = report["html"]
    assert report["path"].exists() and report["path"].suffix == ".html"
    plotly_js = get_plotlyjs()
    assert html.count(plotly_js[:2000]) == 1  # the library inlined, once
    assert not EXTERNAL_SCRIPT.search(html)  # nothing from the network
    assert html.count("Plotly.newPlot") == FIGURES
    assert "<meta charset='utf-8'>" in html


def test_report_has_the_summary_numbers(report):
    html, sample = report["html"], report["sample"]
    store = report["store"]
    summary = store.run_summary(sample.run_id)
    for text in ["gpt-4o-mini", "http://127.0.0.1:9/v1", ">2<", ">7<", f">{len(sample.nodes)}<",
                 f"${summary['cost_usd']:,.4f}", f"{summary['prompt_tokens']:,}", "refusal", "no_new_information",
                 "llm_error", "Lineage", "Drift", "Diversity", "Cost", "Eliminations"]:
        assert text in html, text
    kept = summary["by_status"]["kept"]
    assert f"kept: {kept}" in html


def test_report_shows_korean(report):
    html = report["html"]
    assert "서울의 대중교통" in html or "\\uc11c\\uc6b8\\uc758" in html


def test_second_report_embeds_and_fits_nothing(report):
    emb = report["embedder"]
    embedded, fits = emb.texts_embedded, embed.COUNTERS["umap_fits"]
    assert embedded == len(report["sample"].nodes)
    write_report(report["store"], report["sample"].run_id, report["folder"] / "again.html", embedder=emb)
    assert emb.texts_embedded == embedded and embed.COUNTERS["umap_fits"] == fits


def test_report_of_an_empty_run(store, tmp_path):
    run_id = store.create_run(RunConfig(), [Seed("x")])
    html = write_report(store, run_id, tmp_path / "empty.html").read_text(encoding="utf-8")
    assert "No nodes yet" in html and "No LLM calls yet" in html
    assert html.count(get_plotlyjs()[:2000]) == 1 and not EXTERNAL_SCRIPT.search(html)


class BrokenEmbedder:
    name = "broken"
    texts_embedded = 0

    def encode(self, texts):
        raise RuntimeError("model folder missing")


def test_a_failing_embedder_leaves_a_note(store, tmp_path):
    sample = build_run(store, rounds=1)
    html = write_report(store, sample.run_id, tmp_path / "r.html", embedder=BrokenEmbedder()).read_text("utf-8")
    assert "The diversity section is missing" in html and "model folder missing" in html
    assert "Plotly.newPlot" in html


def test_the_cli_call_uses_the_default_embedder(store, tmp_path, monkeypatch):
    """`python -m evolab report` calls exactly write_report(store, run_id, out): no embedder given."""
    for var in ("EVOLAB_EMBED_MODEL", "EVOLAB_EMBED_BASE_URL", "EVOLAB_EMBED_KEY_ENV"):
        monkeypatch.delenv(var, raising=False)
    sample = build_run(store, rounds=1)
    html = write_report(store, sample.run_id, tmp_path / "cli.html").read_text(encoding="utf-8")
    # the sample run has a Korean seed: the packaged multilingual model, named with its own threshold
    threshold = embed.run_map_threshold(embed.E5_MODEL_NAME)
    assert f"embedder multilingual-e5-small-q4; near-duplicate at cosine ≥ {threshold:.3f}" in html
    assert html.count("Plotly.newPlot") == FIGURES
