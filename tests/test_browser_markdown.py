"""Issue 22, finding 7, in a real browser: an instruction carrying a Markdown image and a link makes no request to any
host but the app's own.

`streamlit run app.py` on a store of its own (tests/test_markdown_text.py's `hostile_store`: a run named with a link
and an image, whose instructions, skills, judge details, review notes and a tuning candidate's rationale carry
`![x](https://example.org/p.png)` and `[click](https://evil.example)`), driven by Debian's chromium through playwright
as tests/test_browser.py does. Every request the page makes is recorded (`page.on("request")`) while Lineage, Step
through, Review, Templates, Runs and Export are opened; each must go to 127.0.0.1 or localhost, and the text must
show as it is written.

Skipped only when chromium is not installed (`make test` installs it as root).
"""
from __future__ import annotations

import os
from urllib.parse import urlparse

import pytest
from test_browser import CHROMIUM, CHROMIUM_ARGS, Page, start_streamlit, stop_process
from test_markdown_text import IMG, LINK, NOTE, RATIONALE, RUN_NAME, WORD_JOINER, hostile_store

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")

LOCAL_HOSTS = {"127.0.0.1", "localhost"}


@pytest.fixture
def hostile_app(tmp_path):
    """The app on a store holding only the hostile run and session; no model is ever called."""
    store, ids = hostile_store(tmp_path / "evolab.db")
    store.close()
    env = dict(os.environ, EVOLAB_DB=str(tmp_path / "evolab.db"), EVOLAB_HOME=str(tmp_path / "home"),
               EVOLAB_APP_WARMUP="0", PYTHONUNBUFFERED="1")
    env.pop("OPENAI_API_KEY", None)
    proc, port = start_streamlit(env, tmp_path / "streamlit.log")
    try:
        yield {"url": f"http://127.0.0.1:{port}", "ids": ids}
    finally:
        stop_process(proc)


def shown(ui: Page) -> str:
    """The page's text as a reader sees it (the invisible word joiners that break autolinks left out); no link on the
    page goes to the addresses in the text (GFM would link a bare https://... even with its punctuation escaped)."""
    main = '[data-testid="stMain"]'
    links = ui.page.locator(f'{main} a[href*="example.org"], {main} a[href*="evil.example"]')
    assert links.count() == 0, [a.get_attribute("href") for a in links.all()]
    assert ui.page.locator(f'{main} img[src*="example"]').count() == 0
    return ui.main_text().replace(WORD_JOINER, "")


def open_expanders(ui: Page) -> None:
    """Open every collapsed expander, so what is inside them is drawn too."""
    for summary in ui.page.locator('[data-testid="stExpander"] summary').all():
        if summary.locator("xpath=..").get_attribute("open") is None:
            summary.click()
    ui.settle()


def test_model_text_with_markdown_makes_no_outside_request(hostile_app):
    from playwright.sync_api import sync_playwright

    run, session = hostile_app["ids"]["run"], hostile_app["ids"]["session"]
    requests: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 2400})
            page.on("request", lambda r: requests.append(r.url))
            page.set_default_timeout(60_000)
            ui = Page(page, hostile_app["url"])
            seen = {}
            for name, path in [("lineage seed", f"lineage?run={run}&node=seed"),
                               ("lineage judged", f"lineage?run={run}&node=equal"),
                               ("lineage reviewed", f"lineage?run={run}&node=kept"),
                               ("step through", f"evolve?run={session}&node=s-kid"),
                               ("review", f"review?run={run}"),
                               ("runs", f"runs?run={run}"),
                               ("export", f"export?run={run}")]:
                ui.goto(path)
                open_expanders(ui)
                seen[name] = shown(ui)
            ui.goto(f"templates?run={run}")
            ui.choose("Operation", "deepen")
            ui.text("Candidate 1")
            open_expanders(ui)
            seen["templates"] = shown(ui)
            ui.shot("markdown-text")
        except Exception:
            Page(page, hostile_app["url"]).shot("failure-markdown-text")
            raise
        finally:
            browser.close()

    outside = [u for u in requests if urlparse(u).scheme in ("http", "https", "ws", "wss")
               and urlparse(u).hostname not in LOCAL_HOSTS]
    assert requests and not outside, outside
    # ... and the text reads as it is written (a link's words and address, the image's Markdown)
    assert f"Child {IMG}" in seen["lineage seed"] and f"Other child {LINK}" in seen["lineage seed"]
    assert "judge said 'Equal' " + IMG in seen["lineage judged"]
    assert NOTE in seen["lineage reviewed"] and NOTE in seen["step through"]
    assert f"Dataset card: {RUN_NAME}" in seen["export"]
    assert RATIONALE[:60] in seen["templates"]
