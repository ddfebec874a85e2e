"""app_common.ensure_frame() flips a private Streamlit flag; if an upgrade removes it the app still starts
and the server log says why a first visit may look different."""
from __future__ import annotations

import logging
import sys

import pytest
from streamlit.testing.v1 import AppTest
from test_app import APP, _app_env, _fresh_resources, _navigation_mode, clean, stub_module  # noqa: F401 (fixtures)

from ui import common as app_common


@pytest.fixture
def flag_removed(monkeypatch):
    """ensure_frame sees a PagesManager without `uses_pages_directory`, as after an upgrade that drops it.
    (Streamlit's own modules keep the real class: AppTest itself resets the flag before every run.)"""
    monkeypatch.setattr(app_common, "_pages_manager", lambda: type("PagesManager", (), {}))
    monkeypatch.setattr(app_common, "_WARNED", set())


def test_ensure_frame_without_the_flag_warns_once_and_returns(flag_removed, caplog):
    with caplog.at_level(logging.WARNING, logger="evolab.app"):
        app_common.ensure_frame()
        app_common.ensure_frame()
    warnings = [r for r in caplog.records if "uses_pages_directory" in r.getMessage()]
    assert len(warnings) == 1


def test_ensure_frame_without_the_module_returns(monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "streamlit.runtime.pages_manager", None)  # import fails
    monkeypatch.setattr(app_common, "_WARNED", set())
    with caplog.at_level(logging.WARNING, logger="evolab.app"):
        app_common.ensure_frame()
    assert any("uses_pages_directory" in r.getMessage() for r in caplog.records)


def test_the_app_starts_and_pages_draw_without_the_flag(flag_removed, tmp_path, monkeypatch):
    monkeypatch.setenv("EVOLAB_DB", str(tmp_path / "f.db"))
    at = clean(AppTest.from_file(APP, default_timeout=60).run())
    assert any("Seed" in t.value for t in at.title)
    for page in ("runs", "drift", "export"):
        clean(at.switch_page(f"pages/{page}.py").run())
