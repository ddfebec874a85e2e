"""The workbench in a real browser: `streamlit run app.py` driven by Debian's chromium through Python
playwright, on the embedded SmolLM2-135M model.

One walk through: open a page straight from its URL, load the finance example seeds, step one seed
twice, run a small 2-round batch in the worker and wait for it (changing page while it runs), then
open lineage (clicking a node), drift, diversity, compare and export. A screenshot of each page goes
to tests/artifacts/ (git-ignored). It asserts structure, never the 135M model's wording.

Skipped only when chromium is not installed (`make test` installs it as root).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import free_port

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
CHROMIUM = shutil.which("chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
BUSY = '[data-testid="stStatusWidget"], [data-testid="stSkeleton"], [data-testid="stAppSkeleton"], ' \
       '[data-testid="stSpinner"]'

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")


def wait_http(url: str, timeout: float) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer in {timeout:.0f} s")


@pytest.fixture(scope="module")
def local_model(tmp_path_factory):
    """The embedded model (owned by this module, so it is stopped for sure), on a port of its own; shared by the
    tests as an endpoint only (it keeps no state a test could see)."""
    from test_local_model import start_local_server

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EVOLAB_HOME", str(tmp_path_factory.mktemp("model-home")))
        model = start_local_server()
    try:
        yield model
    finally:
        model.stop()


def start_streamlit(env: dict, log_path: Path, attempts: int = 5) -> tuple[subprocess.Popen, int]:
    """`streamlit run app.py` on a port of its own. The port is free when picked but Streamlit binds it later:
    when another process took it meanwhile (Streamlit exits, or someone else answers there) it is retried on
    another port."""
    for _ in range(attempts):
        port = free_port()
        log = open(log_path, "ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
             "--server.port", str(port), "--browser.gatherUsageStats", "false"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()  # the child keeps its own copy
        if wait_listening(proc, port, 60):
            wait_http(f"http://127.0.0.1:{port}/_stcore/health", 60)
            return proc, port
        stop_process(proc)
    pytest.fail(f"Streamlit found no free port in {attempts} attempts; see {log_path}")


def wait_listening(proc: subprocess.Popen, port: int, timeout: float) -> bool:
    """True once `proc` listens on `port`; False when it exits first (the port was taken)."""
    from test_local_model import _listening_pid

    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            return False
        if _listening_pid(port) == proc.pid:
            return True
        time.sleep(0.2)
    raise TimeoutError(f"Streamlit did not listen on {port} in {timeout:.0f} s")


def stop_process(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=20)


@pytest.fixture
def app_server(local_model, tmp_path):
    """`streamlit run app.py` on a store of this test's own (no test sees another's runs or seed sets), using the
    module's embedded model."""
    env = dict(os.environ, EVOLAB_DB=str(tmp_path / "evolab.db"), EVOLAB_HOME=str(tmp_path / "home"),
               EVOLAB_LOCAL_PORT=str(local_model.port), PYTHONUNBUFFERED="1")
    env.pop("OPENAI_API_KEY", None)
    log = tmp_path / "streamlit.log"
    proc, port = start_streamlit(env, log)
    try:
        yield {"url": f"http://127.0.0.1:{port}", "db": env["EVOLAB_DB"], "log": log}
    finally:
        stop_process(proc)


class Page:
    """A few waits and clicks that know Streamlit's DOM."""

    def __init__(self, page, base: str):
        self.page, self.base = page, base

    def settle(self, timeout: float = 120) -> None:
        """Wait until no script runs and every element is drawn, for a full second."""
        deadline, quiet = time.time() + timeout, 0
        while time.time() < deadline:
            busy = self.page.evaluate(f"() => !!document.querySelector('{BUSY}')")
            quiet = 0 if busy else quiet + 1
            if quiet >= 4:
                return
            time.sleep(0.25)
        raise TimeoutError("the app stayed busy")

    def goto(self, path: str = "") -> None:
        self.page.goto(f"{self.base}/{path}")
        self.page.wait_for_selector("h1", timeout=90_000)
        self.settle()

    def nav(self, title: str) -> None:
        self.page.locator('[data-testid="stSidebarNav"]').get_by_role("link", name=title, exact=True).click()
        self.page.get_by_role("heading", name=title, exact=True).first.wait_for(timeout=60_000)
        self.settle()

    def text(self, text: str | re.Pattern, timeout: float = 60) -> None:
        self.page.get_by_text(text).first.wait_for(timeout=timeout * 1000)

    def click(self, name: str) -> None:
        self.page.get_by_role("button", name=name, exact=True).click()

    def choose(self, label: str, option: str, *, exact: bool = True) -> None:
        """Pick an option of a selectbox, typing to filter it first (long lists are virtualised)."""
        self.page.get_by_label(label, exact=True).click()
        self.page.keyboard.type(option[:40])
        self.page.get_by_role("option", name=option, exact=exact).first.click()
        self.settle()

    def number(self, label: str, value: int) -> None:
        box = self.page.get_by_label(label, exact=True)
        box.fill(str(value))
        box.press("Enter")
        self.settle()

    def metric(self, label: str) -> str:
        m = self.page.locator('[data-testid="stMetric"]').filter(has_text=label).first
        return m.locator('[data-testid="stMetricValue"]').inner_text().strip()

    def shot(self, name: str) -> Path:
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.page.mouse.move(1, 1)  # no hover box over the figures
        self.page.screenshot(path=str(path))
        return path

    def main_text(self) -> str:
        return self.page.locator('[data-testid="stMain"]').inner_text()


def test_workbench_in_a_browser_on_the_embedded_model(app_server):
    from playwright.sync_api import sync_playwright

    from evolab.store import Store

    started = time.time()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            ui = Page(browser.new_page(viewport={"width": 1500, "height": 2000}), app_server["url"])
            ui.page.set_default_timeout(60_000)

            # A first visit straight to a page's URL is framed by app.py (navigation and settings).
            ui.goto("drift")
            ui.text("No runs in")
            assert ui.page.locator('[data-testid="stSidebar"]').get_by_text("Use these settings").count() == 1
            ui.text("is for trying the workflow offline")  # the embedded model notice, said plainly

            # Seeds: the finance example (Korean and English), counts, save.
            ui.nav("Seeds")
            ui.text("No seeds loaded yet")
            ui.choose("Shipped with evolab", "finance (Korean and English)")
            ui.click("Load example")
            ui.text("By skill")
            ui.settle()
            assert ui.metric("Seeds") == "44"
            assert set(ui.metric("Languages").split(", ")) == {"ko", "en"}
            ui.page.get_by_label("Seed set name", exact=True).fill("finance")
            ui.click("Save seed set")
            ui.text("Saved 44 seeds as 'finance'")
            ui.shot("seeds")

            # Step through: a session on the table's 44 seeds; one English seed evolved twice (English
            # prompts are half the tokens of Korean ones, and the 135M model runs on the CPU).
            ui.nav("Step through")
            ui.click("Start a session")
            ui.text("This node")
            ui.settle()
            ui.text("사회초년생")  # the first seed: Korean renders as text
            ui.choose("Node", "What is the difference between", exact=False)
            ui.click("Evolve")
            ui.text("The step's result", timeout=300)
            ui.settle(300)
            ui.click("Evolve")
            ui.text(re.compile(r"round 2 · operation"), timeout=300)
            ui.settle(300)
            shown = ui.main_text()
            for part in ("Exact prompt sent to the evolver", "Raw output of the evolver", "Rule verdicts", "Scores",
                         "3 node(s) in this tree"):
                assert part in shown, part
            ui.shot("evolve")

            # Runs: 2 seeds x 2 rounds in the worker; change page while it runs; wait for the end.
            # Short answers and no quality judge keep it to a couple of minutes on the 135M model.
            ui.nav("Runs")
            ui.choose("Seeds", "Seed set: finance")
            ui.number("Use only the first N seeds (0 = all)", 2)
            ui.number("Rounds", 2)
            ui.number("Concurrency (requests in flight)", 2)
            ui.page.get_by_text("Answers, judges and rules").click()
            ui.number("Max tokens of an answer", 96)
            ui.page.get_by_text("Quality (LLM, 0-5)", exact=True).click()
            ui.settle()
            ui.text("for 2 seeds × 2 rounds")
            ui.click("Start run")
            ui.text("Status:")
            ui.page.get_by_text("running", exact=True).first.wait_for(timeout=30_000)
            ui.shot("runs-live")
            ui.nav("Lineage")  # the run keeps going in the worker: another page,
            ui.nav("Runs")
            second = Page(browser.new_page(viewport={"width": 1500, "height": 1200}), app_server["url"])
            second.goto("runs")  # a second tab,
            second.text("Status:")
            second.page.close()
            ui.page.reload()  # a reload
            ui.page.wait_for_selector("h1")
            ui.settle()
            ui.text("Finished.", timeout=480)
            ui.settle()
            assert ui.metric("Deepest round") == "2 of 2"
            assert int(ui.metric("Calls").replace(",", "")) > 0
            ui.shot("runs")
            store = Store(app_server["db"])
            batch = next(r for r in store.list_runs() if r["status"] != "interactive")
            assert batch["status"] == "finished" and len(batch["seeds"]) == 2
            assert {n.round for n in store.nodes(batch["id"])} == {0, 1, 2}

            # Lineage: the tree of the first seed; a click on a round-2 node shows it.
            ui.nav("Lineage")
            ui.page.locator('[data-testid="stPlotlyChart"]').first.wait_for()
            ui.text("Selected node")
            points = ui.page.locator('[data-testid="stPlotlyChart"] .scatterlayer .trace .points path')
            assert points.count() >= 3
            box = points.last.bounding_box()
            ui.page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
            ui.text(re.compile(r"round [12] · operation"), timeout=30)
            ui.settle()
            ui.shot("lineage")

            # Drift: the four metrics and the eliminations.
            ui.nav("Drift")
            ui.text("Evolved nodes")
            ui.text("Difficulty (LLM, 1-10) by round and operation")
            ui.text("Eliminations by rule per round")
            assert ui.metric("Rounds") == "2"
            ui.shot("drift")

            # Diversity: the UMAP map (the packaged MiniLM), numbers per round, pairs.
            ui.nav("Diversity")
            ui.text("Near-duplicates", timeout=120)
            ui.text(re.compile(r"Instructions in embedding space"), timeout=60)
            ui.settle()
            assert "Diversity per round" in ui.main_text()
            assert re.match(r"\d+ of \d+", ui.metric("Near-duplicates"))
            ui.shot("diversity")

            # Compare and Export open on the same run.
            ui.nav("Compare")
            ui.text("Metric means (seeds and kept nodes)")
            ui.shot("compare")
            ui.nav("Export")
            ui.text("Dataset card:")
            records = int(ui.metric("Records"))
            assert records >= 2  # at least the two answered seeds
            with ui.page.expect_download(timeout=60_000) as download:
                ui.page.get_by_role("button", name=re.compile(r"Download evolab-.*-alpaca\.json")).click()
            exported = json.loads(Path(download.value.path()).read_text(encoding="utf-8"))
            assert len(exported) == records and {"instruction", "input", "output"} <= set(exported[0])
            ui.shot("export")
            store.close()
        except Exception:
            ui.shot("failure")
            log = Path(app_server["log"]).read_text(errors="replace")[-4000:]
            print(f"--- streamlit log (tail) ---\n{log}")
            raise
        finally:
            browser.close()
    print(f"browser walk-through: {time.time() - started:.0f} s")


def test_review_page_in_a_browser_keep_by_keyboard(app_server):
    """The Review page on a crafted run: the queue shows one node, the K shortcut keeps it, the next one shows."""
    from playwright.sync_api import sync_playwright
    from test_review import crafted_store

    store, run_id = crafted_store(app_server["db"])  # a crafted run in the app's store, beside any other
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            ui = Page(browser.new_page(viewport={"width": 1500, "height": 1600}), app_server["url"])
            ui.page.set_default_timeout(60_000)
            ui.goto(f"review?run={run_id}")
            ui.text("In the queue because:")
            ui.text(re.compile(r"Node 1 of \d+"))
            total = re.search(r"Node 1 of (\d+)", ui.main_text()).group(1)
            ui.page.get_by_role("heading", name="Review", exact=True).first.click()  # focus off the inputs
            ui.page.keyboard.press("k")
            ui.text(f"Node 2 of {total}")
            ui.settle()
            reviews = store.reviews([run_id])
            assert [r["verdict"] for r in reviews] == ["keep"] and reviews[0]["reasons"]
            ui.shot("review")
        except Exception:
            ui.shot("failure-review")
            raise
        finally:
            browser.close()
            store.close()


def test_seeds_coverage_map_in_a_browser(app_server):
    """The Seeds page's coverage map (issue 10): load the finance example, the heat map draws skills x difficulty with
    empty cells marked, and the thin threshold redraws it."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            ui = Page(browser.new_page(viewport={"width": 1500, "height": 2400}), app_server["url"])
            ui.page.set_default_timeout(60_000)
            ui.goto()  # the Seeds page is the default page, served at the root
            ui.choose("Shipped with evolab", "finance (Korean and English)")
            ui.click("Load example")
            ui.settle()
            ui.page.get_by_role("tab", name="Coverage", exact=True).click()
            ui.text("Cell to grow")
            heat = """() => [...document.querySelectorAll('.js-plotly-plot')].map(d => d.data || [])
                .filter(d => d.length && d[0].type === 'heatmap')
                .map(d => ({skills: d[0].customdata.map(r => r[0][0]), names: d.map(t => t.name),
                            marks: d.slice(1).map(t => t.x.length)}))"""
            ui.page.wait_for_function(f"({heat})().length === 1", timeout=60_000)
            figure = ui.page.evaluate(heat)[0]
            assert "accounting" in figure["skills"] and "empty" in figure["names"]
            ui.number("Thin below", 4)
            ui.page.wait_for_function(f"({heat})()[0] && ({heat})()[0].names.includes('thin (< 4)')", timeout=60_000)
            ui.shot("seeds-coverage")
        except Exception:
            ui.shot("failure-seeds-coverage")
            raise
        finally:
            browser.close()
