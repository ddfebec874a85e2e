"""How long the Review page takes on big runs, over a run written straight to the store with the rows a real run
stores (up to eight rule verdicts, difficulty, quality and three complexity scores and five LLM calls per evolved
node) and 200 reviews (140 from the head of the queue, 60 of the audit sample, so the agreement is drawn).

The page's work, timed as functions (best of 3):
- read: the rows the queue needs (`review_frames`; the page caches it until the run changes);
- open: read + the queue + the agreement table + the first node's view (`node_detail`);
- open, queue kept: the same once the queue's candidates are kept in the store (`review.kept_candidates`, a second
  process): no read of the whole run, the agreement from the reviewed nodes' rows;
- a key press (K, D or S): what the page does between the press and the next node. Before issue 28 the whole page
  reran: the verdict written, the queue and the agreement computed again, the next node read. Since, a fragment
  reruns only the node view: the verdict written, the session's queue advanced (`ReviewSession`), the next node read.
With `--page`, also the whole page under Streamlit's AppTest (the script as a server runs it, without the browser's
drawing): the app's first run in a new process straight on the Review page (imports included), twice (the second
finds the queue the first kept, where the code keeps it), and in this process a first open and the best of two more.
With `--browser`, the page in chromium against `streamlit run app.py` on the largest run, `--repeat` rounds: from
opening the page's address to "Node k of n" on a fresh server and browser, on two new tabs and two reloads of that
running server, and from a K press to "Node k+1 of n" drawn (10). `--against TREE` serves another tree's code in turns
with this one's (before and after under the same load).

    .venv/bin/python bench/review.py --nodes 1000 11112 [--page] [--browser]    # 11,112 nodes: 10,000 evolved
    .venv/bin/python bench/review.py --nodes 11112 --browser --repeat 4 --against /tmp/before   # git archive of before

The code measured is the tree the script sits in; run a copy of this file inside an older tree for "before".
"""
from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from evolab.app import support as app_support  # noqa: E402
from evolab.audit import review  # noqa: E402
from evolab.schema import LLMCall, Node, RunConfig, Score, Seed  # noqa: E402
from evolab.store import Store  # noqa: E402

RULES = ["truncated", "no_new_information", "prompt_leak", "refusal", "empty_response", "duplicate", "low_quality"]
PURPOSES = ["evolve", "respond", "equal", "difficulty", "quality"]


def build(store: Store, n_nodes: int) -> str:
    rng = random.Random(0)
    run_id = store.create_run(RunConfig(model="m", rounds=5), [Seed("s")], name=f"review-{n_nodes}")
    nodes, scores, calls = [], [], []
    seeds = max(1, n_nodes // 10)
    for i in range(n_nodes):
        if i < seeds:
            nodes.append(Node(id=f"n{i}", run_id=run_id, parent_id=None, root_id=f"n{i}", round=0, operation="seed",
                              instruction=f"seed {i}", status="seed", response="a"))
            continue
        parent = f"n{i % seeds}"
        verdicts = []
        failed_at = rng.randrange(len(RULES) + 4)  # most nodes pass everything
        for j, rule in enumerate(RULES):
            value = 0.0 if j == failed_at else 1.0
            verdicts.append(Score(f"n{i}", f"rule:{rule}", value, "heuristic", "detail"))
            if rule == "no_new_information":
                verdicts.append(Score(f"n{i}", "rule:no_new_information", None if rng.random() < 0.02 else 1.0,
                                      "m", "judge"))
            if value == 0.0:
                break
        failed = failed_at < len(RULES)
        nodes.append(Node(id=f"n{i}", run_id=run_id, parent_id=parent, root_id=parent, round=1 + i % 5,
                          operation="deepen", instruction=f"instruction {i}", response="answer",
                          status="eliminated" if failed else "kept", rule=RULES[failed_at] if failed else None))
        scores += verdicts + [Score(f"n{i}", "quality", rng.choice([3.0, 3.5, 4.0, 4.5, 5.0]), "m", "[json]"),
                              Score(f"n{i}", "difficulty", float(rng.randint(1, 10)), "m", "[json]")]
        scores += [Score(f"n{i}", f"cx_{k}", rng.random(), "heuristic") for k in ("index", "tokens", "steps")]
        calls += [LLMCall(p, "m", 300, 100, 0.5, 0.0001, run_id=run_id, node_id=f"n{i}") for p in PURPOSES]
    store.save_nodes(nodes)
    store.add_scores(scores)
    store.record_step(calls=calls)
    queue = review.review_queue(store, [run_id], margin=0.5, audit_size=20, thresholds={"quality": 4.5})
    for row in queue.head(140).to_dict("records"):
        review.record_review(store, row["node_id"], rng.choice(["keep", "discard"]), reasons=row["reasons"])
    # and 60 of the audit sample the page shows at its defaults, so the agreement (its table and figure) is drawn,
    # as after a real session
    audit = review.review_queue(store, [run_id], margin=0.5, audit_size=10, thresholds=review.run_thresholds(store, [run_id]))
    for row in audit.head(60).to_dict("records"):
        review.record_review(store, row["node_id"], rng.choice(["keep", "discard"]), reasons=row["reasons"])
    return run_id


def timed(fn, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def page_open(db: str, run_id: str) -> tuple[float, float]:
    """The Review page's open under AppTest, each in a fresh AppTest: (the first, in this process: nothing cached;
    the best of the next 2: the run's rows cached, as a server has them after a first open)."""
    from streamlit.runtime.pages_manager import PagesManager
    from streamlit.testing.v1 import AppTest

    from ui.common import Settings

    init = PagesManager.__init__

    def init_v2(self, *args, **kwargs):  # as tests/test_app.py: start in the mode a server is in after its first run
        init(self, *args, **kwargs)
        PagesManager.uses_pages_directory = False

    PagesManager.__init__ = init_v2
    os.environ["EVOLAB_APP_WARMUP"] = "0"
    times = []
    for _ in range(3):
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
        at.session_state["settings"] = Settings(db_path=db)
        at.query_params["run"] = run_id
        at.run()
        t = time.perf_counter()
        at.switch_page("pages/review.py").run()
        times.append(time.perf_counter() - t)
        assert not at.exception, [e.value for e in at.exception]
    PagesManager.__init__ = init
    return times[0], min(times[1:])


# In the page: when "Node k of n" is first in the document, the next animation frame (the frame that draws it), and
# when the Keep button is drawn (K works from then on); times from the navigation's start.
MARKS_SCRIPT = """
window.__review = {};
const mark = (k) => { if (!(k in window.__review)) requestAnimationFrame(() => { if (!(k in window.__review)) window.__review[k] = performance.now(); }); };
new MutationObserver(() => {
  const text = document.body ? document.body.textContent : "";
  if (/Node \\d+ of \\d+/.test(text)) mark("node");
  if (Array.from(document.querySelectorAll('[data-testid="stButton"] button')).some(b => b.textContent.includes("Keep")))
    mark("keys");
}).observe(document, {subtree: true, childList: true, characterData: true});
"""


def _percentiles(values: list[float]) -> str:
    import statistics

    return f"best {min(values):.2f} / median {statistics.median(values):.2f}"


FRESH_OPEN = """
import os, sys, time
sys.path.insert(0, sys.argv[1])
os.environ["EVOLAB_APP_WARMUP"] = "0"
from streamlit.runtime.pages_manager import PagesManager
from streamlit.testing.v1 import AppTest
init = PagesManager.__init__
def init_v2(self, *args, **kwargs):
    init(self, *args, **kwargs)
    PagesManager.uses_pages_directory = False
PagesManager.__init__ = init_v2
from evolab.app.support import Settings
at = AppTest.from_file(os.path.join(sys.argv[1], "app.py"), default_timeout=300)
at.session_state["settings"] = Settings(db_path=sys.argv[2])
at.query_params["run"] = sys.argv[3]
at.switch_page("pages/review.py")
t = time.perf_counter()
at.run()
assert not at.exception and any("Node" in p.proto.text for p in at.get("progress")), [e.value for e in at.exception]
print(time.perf_counter() - t)
"""


def fresh_process_open(db: str, run_id: str) -> float:
    """The whole app's first run in a new process, straight on the Review page under AppTest: app.py's imports (the
    app's modules, pandas), the frame, the sidebar and the page; the store may hold the kept queue already."""
    import subprocess

    out = subprocess.run([sys.executable, "-c", FRESH_OPEN, str(ROOT), db, run_id], capture_output=True, text=True,
                         check=True, timeout=600)
    return float(out.stdout.strip().splitlines()[-1])


def browser_times(db: str, run_id: str, repeat: int = 3, trees: list[Path] | None = None) -> dict[str, list[float]]:
    """The Review page in chromium (as NOTES.md says: the system's chromium, driven by playwright) against `streamlit
    run app.py` on `db`, `repeat` rounds. Each round, for each tree in `trees` in turn (this one by default; another
    one's code to compare, the rounds interleaved so that both see the same load on this shared machine): a fresh
    server (up when /_stcore/health answers, no page loaded yet) and a fresh browser context (nothing cached) open the
    page's address: the server's first open; then two new tabs and two reloads on that running server: new sessions.
    For each, from the address to "Node k of n" seen by playwright ("wall"), and in the page from the navigation's
    start to the frame that draws "Node k of n" and to the one that draws the Keep button. In the last round, 10 K
    presses to "Node k+1 of n" drawn."""
    import re
    import shutil
    import socket
    import subprocess
    import urllib.request

    from playwright.sync_api import sync_playwright

    trees = trees or [ROOT]
    out: dict[str, list[float]] = {}

    def record(label: str, value: float) -> None:
        out.setdefault(label, []).append(value)

    def start_server(tree: Path):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        env = {**os.environ, "EVOLAB_DB": db, "EVOLAB_APP_WARMUP": "0", "PYTHONPATH": str(tree)}
        server = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(tree / "app.py"),
                                   "--server.headless", "true", "--server.port", str(port),
                                   "--browser.gatherUsageStats", "false"],
                                  cwd=tree, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while True:  # up when its health check answers; no script has run yet
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2).read()
                return server, port
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    server.kill()
                    raise
                time.sleep(0.2)

    def open_review(page, port: int, label: str) -> None:
        t = time.perf_counter()
        page.goto(f"http://127.0.0.1:{port}/review?run={run_id}")
        page.get_by_text(re.compile(r"Node \d+ of \d+")).first.wait_for()
        record(f"{label}: wall", time.perf_counter() - t)
        page.wait_for_function("'node' in window.__review && 'keys' in window.__review")
        marks = page.evaluate("window.__review")
        record(f"{label}: node drawn", marks["node"] / 1000)
        record(f"{label}: keys drawn", marks["keys"] / 1000)
        page.wait_for_selector('[data-testid="stStatusWidget"]', state="detached")

    def new_tab(context):
        page = context.new_page()
        page.set_default_timeout(300_000)
        return page

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        for round_ in range(repeat):
            for tree in trees:
                name = "" if len(trees) == 1 else f"{tree.name}, "
                server, port = start_server(tree)
                try:
                    context = browser.new_context(viewport={"width": 1400, "height": 1000})  # nothing cached
                    context.add_init_script(MARKS_SCRIPT)
                    page = new_tab(context)
                    open_review(page, port, f"{name}the server's first open")
                    for _ in range(2):  # new sessions of the running server: a new tab each (the cache warm)
                        page.close()
                        page = new_tab(context)
                        open_review(page, port, f"{name}a new session, a new tab")
                    for _ in range(2):  # and reloads of that tab (a new session each)
                        open_review(page, port, f"{name}a new session, a reload")
                    for _ in range(10 if round_ == repeat - 1 else 0):
                        text = page.get_by_text(re.compile(r"Node \d+ of \d+")).first.inner_text()
                        k, n = map(int, re.search(r"Node (\d+) of (\d+)", text).groups())
                        page.get_by_role("heading", name="Review", exact=True).first.click()  # focus off the inputs
                        t = time.perf_counter()
                        page.keyboard.press("k")
                        page.get_by_text(f"Node {k + 1} of {n}").first.wait_for()
                        record(f"{name}a K press to the next node", time.perf_counter() - t)
                        page.wait_for_selector('[data-testid="stStatusWidget"]', state="detached")
                    context.close()
                finally:
                    server.terminate()
                    server.wait(timeout=30)
        browser.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, nargs="+", default=[1000, 11112])
    ap.add_argument("--page", action="store_true", help="also time the page's first open under AppTest")
    ap.add_argument("--browser", action="store_true", help="also time the page in chromium on the largest run")
    ap.add_argument("--repeat", type=int, default=3, help="rounds of the browser's opens (--browser)")
    ap.add_argument("--against", nargs="*", default=[], metavar="TREE",
                    help="with --browser: also open the page served by this tree's code (e.g. a `git archive` of the "
                         "code before), in turns with this one's, so both meet the same load")
    args = ap.parse_args()
    fragment = hasattr(review, "ReviewSession")
    print(f"code: {'a fragment and a kept queue' if fragment else 'the whole page reruns'} ({ROOT}); "
          f"load average {os.getloadavg()[0]:.1f} at the start\n")
    print("| evolved nodes | score rows read | read (s) | queue (s) | agreement (s) | a node's view (s) | open (s) "
          "| open, queue kept (s) | a key press (s) |"
          + (" page open, AppTest, a new process: first / second (s) | page open, AppTest: first / cached (s) |" if args.page else "")
          + " load |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|" + ("---:|---:|" if args.page else "") + "---:|")
    args_q = dict(margin=0.5, audit_size=20, thresholds={"quality": 4.5}, include_reviewed=True)
    for n in args.nodes:
        with tempfile.TemporaryDirectory() as tmp:
            store = Store(Path(tmp) / "bench.db")
            run_id = build(store, n)
            nodes, scores = review.review_frames(store, [run_id])
            read = timed(lambda: review.review_frames(store, [run_id]))
            q = timed(lambda: review.select_queue(nodes, scores, store.reviews([run_id]), **args_q))
            a = timed(lambda: review.agreement_of(nodes, scores, store.reviews([run_id])))
            whole = review.select_queue(nodes, scores, store.reviews([run_id]), **args_q)
            pending = whole[~whole["reviewed"]].to_dict("records")
            view = timed(lambda: app_support.node_detail(store, pending[0]["node_id"]))
            presses = iter(pending[1:])
            session = review.ReviewSession.from_queue(whole) if fragment else None
            kept = float("nan")
            if hasattr(review, "kept_candidates"):  # an open on the queue kept in the store (a second process)
                settings = {k: v for k, v in args_q.items() if k != "include_reviewed"}
                review.kept_candidates(store, [run_id], **settings)

                def kept_open() -> None:
                    reviews = store.reviews([run_id])
                    whole_kept = review.order_queue(review.kept_candidates(store, [run_id], **settings), reviews,
                                                    include_reviewed=True)
                    review.agreement_of(*review.review_frames(store, [run_id], reviewed_only=True), reviews)
                    app_support.node_detail(store, whole_kept[~whole_kept["reviewed"]].iloc[0]["node_id"])

                kept = timed(kept_open)

            def key_press() -> None:
                row = next(presses)
                review.record_review(store, row["node_id"], "skip", reasons=row["reasons"])
                if fragment:  # the fragment: advance the kept queue, read the next node
                    session.advance(row["node_id"], "skip")
                    app_support.node_detail(store, session.current()["node_id"])
                else:  # the whole page: the queue and the agreement again, then the next node
                    reviews = store.reviews([run_id])
                    queue = review.select_queue(nodes, scores, reviews, **args_q)
                    review.agreement_of(nodes, scores, reviews)
                    app_support.node_detail(store, queue[~queue["reviewed"]].iloc[0]["node_id"])

            press = timed(key_press, repeat=5)
            line = (f"| {len(nodes):,} | {len(scores):,} | {read:.2f} | {q:.2f} | {a:.2f} | {view:.3f} "
                    f"| {read + q + a + view:.2f} | {kept:.2f} | {press:.3f} |")
            if args.page:
                fresh = fresh_process_open(str(store.path), run_id)  # computes the page's queue (and keeps it)
                fresh_kept = fresh_process_open(str(store.path), run_id)  # reads it back, if the code keeps it
                first, cached = page_open(str(store.path), run_id)
                line += f" {fresh:.2f} / {fresh_kept:.2f} | {first:.2f} / {cached:.2f} |"
            print(line + f" {os.getloadavg()[0]:.1f} |")
            if args.browser and n == max(args.nodes):
                times = browser_times(str(store.path), run_id, args.repeat,
                                      [ROOT] + [Path(t).resolve() for t in args.against])
            store.close()
    if args.browser:
        print(f"\nIn chromium ({len(nodes):,} evolved nodes), seconds, load average {os.getloadavg()[0]:.1f}:")
        for label, values in times.items():
            print(f"- {label}: {_percentiles(values)} ({', '.join(f'{v:.2f}' for v in values)})")


if __name__ == "__main__":
    main()
