"""The Diversity page with the real packaged embedders: the multilingual model on a Korean run (no
English-only warning, its own calibrated threshold as the slider's default, the model and threshold
named under the map), and the warning back only when the user forces the English-only MiniLM."""
from __future__ import annotations

import pytest
from test_app import _app_env, _fresh_resources, _navigation_mode, open_page, stub_module, texts  # noqa: F401 (fixtures)

from evolab.embeddings import embed
from evolab.engine import pipeline
from evolab.schema import RunConfig, Seed
from evolab.store import Store

KOREAN = ["주식을 1년 넘게 보유하다가 팔면 양도소득세는 어떻게 계산되나요?",
          "전세자금대출을 받으려면 어떤 서류가 필요한가요?",
          "연금저축을 중도에 해지하면 세금을 얼마나 내야 하나요?"]


@pytest.fixture
def korean_run(tmp_path):
    """A Korean run with its three seeds (three points: the map needs no UMAP fit)."""
    db = str(tmp_path / "ko.db")
    store = Store(db)
    run, _ = pipeline.start_interactive(store, [Seed(t, language="ko") for t in KOREAN], RunConfig(model="m"),
                                        name="ko")  # seed nodes, no model call
    store.close()
    return db, run


def _packaged_models_only(monkeypatch, model: str | None = None):
    """The tests' default is a stub embeddings endpoint: switch to the packaged models (or force one)."""
    monkeypatch.delenv("EVOLAB_EMBED_BASE_URL", raising=False)
    monkeypatch.delenv("EVOLAB_EMBED_KEY_ENV", raising=False)
    if model:
        monkeypatch.setenv("EVOLAB_EMBED_MODEL", model)
    else:
        monkeypatch.delenv("EVOLAB_EMBED_MODEL", raising=False)


def test_korean_run_uses_the_multilingual_model_without_a_warning(korean_run, monkeypatch):
    _packaged_models_only(monkeypatch)
    db, run = korean_run
    at = open_page(db, "diversity", query={"run": run}, timeout=180)
    assert not at.error, [e.value for e in at.error]
    shown = texts(at)
    assert "English-only" not in shown
    threshold = embed.run_map_threshold(embed.E5_MODEL_NAME)
    assert embed.E5_MODEL_NAME in shown and f"{threshold:.3f}" in shown  # which model and threshold made the marks
    assert at.slider(key="diversity_threshold").value == pytest.approx(round(threshold, 3))


def test_forcing_the_english_only_model_brings_the_warning_back(korean_run, monkeypatch):
    _packaged_models_only(monkeypatch, "all-MiniLM-L6-v2")
    db, run = korean_run
    at = open_page(db, "diversity", query={"run": run}, timeout=180)
    warnings = [w.value for w in at.warning]
    assert any("English-only" in w and "all-MiniLM-L6-v2" in w for w in warnings), warnings
    threshold = embed.run_map_threshold(embed.MINILM_MODEL_NAME)
    assert at.slider(key="diversity_threshold").value == pytest.approx(round(threshold, 3))


def test_the_slider_starts_again_at_the_new_models_threshold_when_the_run_changes(tmp_path, monkeypatch):
    """A threshold moved for one model means nothing for another: switching to a run mapped by another
    model starts the slider at that model's own calibrated value."""
    _packaged_models_only(monkeypatch)
    db = str(tmp_path / "two.db")
    store = Store(db)
    korean, _ = pipeline.start_interactive(store, [Seed(t, language="ko") for t in KOREAN], RunConfig(model="m"),
                                           name="ko")
    english, _ = pipeline.start_interactive(store, [Seed(t, language="en") for t in (
        "Explain how tides work.", "Write a haiku about rain.", "How do index funds work?")], RunConfig(model="m"),
                                            name="en")
    store.close()
    at = open_page(db, "diversity", query={"run": korean}, timeout=180)
    at.slider(key="diversity_threshold").set_value(0.95).run()
    assert at.slider(key="diversity_threshold").value == pytest.approx(0.95)
    at.selectbox(key="diversity_run").set_value(english).run()
    assert not at.exception, [e.value for e in at.exception]
    assert embed.MINILM_MODEL_NAME in texts(at)  # an all-English run: MiniLM, which measured better there
    assert at.slider(key="diversity_threshold").value == pytest.approx(round(embed.run_map_threshold("minilm"), 3))
