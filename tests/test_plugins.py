"""Plugins from outside the repository: the shipped example scorer `words` (examples/plugins/words.py), copied
to a temporary folder and loaded through EVOLAB_PLUGINS, scores a run; its score reaches the lineage export,
`runs` and the Drift page; the run records the plugin and its version, and cannot resume without it. A plugin
that fails to import or to register is named and skipped, and nothing else breaks."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import STUB_KEY_ENV, free_port
from test_app import _app_env, _fresh_resources, _navigation_mode, open_page, stub_module, texts  # noqa: F401

from evolab.engine import operations, pipeline, plugins, scoring
from evolab.engine.eliminator import CASCADE, all_rule_ids
from evolab.llm import FakeBackend
from evolab.llm.fake import scripted_reply
from evolab.schema import RunConfig, Seed
from evolab.store import Store

ROOT = Path(__file__).resolve().parents[1]
WORDS = ROOT / "examples" / "plugins" / "words.py"
PLUGIN_MODULES = ("words", "broken_import", "taken_name", "half_done", "quotes_price", "plain_words")


@pytest.fixture
def plugin_dir(tmp_path) -> Path:
    """A folder outside the repository holding the example plugin, as a user's own would."""
    folder = tmp_path / "my-plugins"
    folder.mkdir()
    shutil.copy(WORDS, folder / "words.py")
    return folder


@pytest.fixture
def registries():
    """What plugins register in this process is taken out again, so other tests see only the built-ins."""
    before, loaded = plugins._snapshot(), dict(plugins._PLUGINS)
    yield
    plugins._restore(before)
    plugins._PLUGINS.clear()
    plugins._PLUGINS.update(loaded)
    for name in PLUGIN_MODULES:
        sys.modules.pop(name, None)


def cli_env(tmp_path, plugin_dir: Path | None, names: str | None) -> dict[str, str]:
    env = dict(os.environ)
    env["EVOLAB_HOME"] = str(tmp_path / "home")
    env["EVOLAB_LOCAL_PORT"] = str(free_port())
    env.pop("EVOLAB_PLUGINS", None)
    if names is not None:
        env["EVOLAB_PLUGINS"] = names
    if plugin_dir is not None:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(plugin_dir), env.get("PYTHONPATH", "")) if p)
    return env


def cli(env: dict[str, str], cwd: Path, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "evolab", *map(str, args)], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def test_the_words_scorer_from_a_folder_outside_the_repo(stub, tmp_path, plugin_dir):
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text("".join(json.dumps({"instruction": s}) + "\n" for s in
                             ("Explain why the sky is blue.", "Give three tips for learning a new language.")))
    db = tmp_path / "plugin.db"
    env = cli_env(tmp_path, plugin_dir, "words")
    r = cli(env, tmp_path, "run", seeds, "--db", db, "--rounds", 2, "--base-url", stub.base_url, "--model",
            "gpt-4o-mini", "--api-key-env", STUB_KEY_ENV, "--scorers", "complexity,difficulty,words")
    assert r.returncode == 0, r.stderr
    assert "warning" not in r.stderr

    store = Store(db)
    (run,) = store.list_runs()
    config = run["config"]
    assert config.scorers == ["difficulty", "complexity", "words"]  # registry order
    assert config.plugins == [{"name": "words", "module": "words", "source": "EVOLAB_PLUGINS", "version": "1.0",
                               "provides": {"scorers": ["words"]}}]
    answered = [n for n in store.nodes(run["id"]) if n.response is not None]
    assert len(answered) >= 4  # the seeds and kept children
    metrics = {s.metric for s in store.scores(run["id"])}
    assert "words" in metrics and "quality" not in metrics  # --scorers left quality out
    store.close()

    out = tmp_path / "lineage.jsonl"
    r = cli(env, tmp_path, "export", "--db", db, "--format", "lineage", "--out", out, "--status", "all")
    assert r.returncode == 0, r.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    with_answer = [rec for rec in records if rec["response"] is not None]
    assert with_answer
    for rec in with_answer:
        assert rec["scores"]["words"] == len(rec["response"].split())

    r = cli(env, tmp_path, "runs", "--db", db)
    assert r.returncode == 0, r.stderr
    mean = sum(len(rec["response"].split()) for rec in with_answer) / len(with_answer)
    assert f"words {mean:.2f} (n {len(with_answer)})" in r.stdout

    # Without the plugin the run cannot go on: the error names it and what to do (exit 2, before any call).
    calls_before = stub.count()
    r = cli(cli_env(tmp_path, None, None), tmp_path, "resume", "--db", db, "--run", run["id"])
    assert r.returncode == 2, r.stderr
    assert "scorer 'words'" in r.stderr and "plugin 'words'" in r.stderr and "EVOLAB_PLUGINS" in r.stderr
    assert stub.count() == calls_before


def test_the_drift_and_runs_pages_offer_the_plugins_scorer(tmp_path, plugin_dir, monkeypatch, registries):
    monkeypatch.setenv("EVOLAB_PLUGINS", "words")
    monkeypatch.syspath_prepend(str(plugin_dir))
    db = str(tmp_path / "pages.db")
    store = Store(db)
    config = RunConfig(rounds=1, scorers=["complexity", "words"], concurrency=2)
    plugins.load_plugins()  # what app.py does first; before, `words` is no scorer
    run_id = pipeline.create_run(store, [Seed("Name three rivers."), Seed("Explain tides.")], config)
    pipeline.run_sync(store, run_id, backend=FakeBackend())
    store.close()

    at = open_page(db, "drift")
    charts = {c.key: json.loads(c.proto.spec) for c in at.get("plotly_chart")}
    assert "drift_words" in charts
    assert charts["drift_words"]["layout"]["yaxis"]["title"]["text"] == "Answer length (words)"
    assert any(trace["y"] for trace in charts["drift_words"]["data"])  # values, not an empty figure

    at = open_page(db, "runs")
    assert "Answer length (words)" in [c.label for c in at.checkbox]


def test_a_plugin_that_fails_is_named_and_nothing_else_breaks(tmp_path, plugin_dir, monkeypatch, registries):
    (plugin_dir / "broken_import.py").write_text("import no_such_library_here\n")
    (plugin_dir / "taken_name.py").write_text(
        "from evolab.plugins import Scorer, register_scorer\n"
        "class Mine(Scorer):\n    name = 'quality'\n    def score(self, node, context):\n        return 1.0\n"
        "register_scorer(Mine())\n")
    # registers one scorer, then fails: the one it registered is taken out again
    (plugin_dir / "half_done.py").write_text(
        "from evolab.plugins import Scorer, register_scorer\n"
        "class First(Scorer):\n    name = 'first'\n    def score(self, node, context):\n        return 1.0\n"
        "register_scorer(First())\nraise RuntimeError('config file missing')\n")
    monkeypatch.syspath_prepend(str(plugin_dir))
    before = (list(scoring.SCORERS), list(operations.OPERATION_REGISTRY), list(CASCADE))
    tried = plugins.load_plugins("broken_import,taken_name,half_done,words")
    errors = plugins.plugin_errors()
    assert len(errors) == 3
    assert any("'broken_import'" in e and "no_such_library_here" in e for e in errors)
    assert any("'taken_name'" in e and "already registered" in e for e in errors)
    assert any("'half_done'" in e and "config file missing" in e for e in errors)
    assert "first" not in scoring.SCORERS and type(scoring.SCORERS["quality"]).__name__ == "QualityScorer"
    assert [p.name for p in tried if p.error is None] == ["words"]  # the good one still loads
    assert (list(scoring.SCORERS), list(operations.OPERATION_REGISTRY), list(CASCADE)) == \
        (before[0] + ["words"], before[1], before[2])

    # The CLI says so on stderr and goes on.
    seeds = tmp_path / "s.txt"
    seeds.write_text("Explain tides.\n")
    r = cli(cli_env(tmp_path, plugin_dir, "broken_import"), tmp_path, "seeds", "check", seeds)
    assert r.returncode == 0, r.stderr
    assert "warning: evolab plugin 'broken_import'" in r.stderr and "1 seeds" in r.stdout


def test_an_installed_package_loads_through_its_entry_point(tmp_path, plugin_dir, monkeypatch, registries):
    dist = plugin_dir / "evolab_words-2.3.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: evolab-words\nVersion: 2.3\n")
    (dist / "entry_points.txt").write_text(f"[{plugins.ENTRY_POINT_GROUP}]\nwords = words\n")
    monkeypatch.syspath_prepend(str(plugin_dir))
    monkeypatch.delenv("EVOLAB_PLUGINS", raising=False)
    loaded = [p for p in plugins.load_plugins() if p.module == "words"]
    assert [(p.name, p.source, p.version, p.error) for p in loaded] == [("words", "entry point", "2.3", None)]
    assert "words" in scoring.SCORERS
    config = RunConfig(scorers=["words"])
    assert plugins.used_by(config)[0]["version"] == "2.3"


RULE_PLUGIN = '''
from evolab.plugins import RESPONSE, Rule, Verdict, register_rule

class QuotesPrice(Rule):
    """Drop answers that quote a price."""
    id = "quotes_price"
    needs = RESPONSE

    async def check(self, ctx):
        bad = "$" in (ctx.node.response or "")
        return Verdict(self.id, not bad, "quotes a price" if bad else "no price")

register_rule(QuotesPrice())
'''
OPERATION_PLUGIN = '''
from pathlib import Path
from evolab.plugins import IN_DEPTH, Operation, register_operation

register_operation(Operation("plain_words", IN_DEPTH, "Ask for the same task in plain words.",
                             prompts_dir=Path(__file__).with_name("prompts")))
'''


def test_a_rule_and_an_operation_from_plugins_run_like_the_built_in_ones(tmp_path, plugin_dir, monkeypatch,
                                                                        registries):
    (plugin_dir / "quotes_price.py").write_text(RULE_PLUGIN)
    (plugin_dir / "plain_words.py").write_text(OPERATION_PLUGIN)
    (plugin_dir / "prompts" / "en").mkdir(parents=True)
    (plugin_dir / "prompts" / "en" / "plain_words.txt").write_text(
        "Rewrite the task below in plain words, without jargon.\n#Given Prompt#:\n{instruction}\n#Rewritten Prompt#:\n")
    monkeypatch.syspath_prepend(str(plugin_dir))
    tried = plugins.load_plugins("quotes_price,plain_words", entry_points=False)
    assert not plugins.plugin_errors()
    assert {p.name: p.provides for p in tried if p.module in ("quotes_price", "plain_words")} == \
        {"quotes_price": {"rules": ["quotes_price"]}, "plain_words": {"operations": ["plain_words"]}}
    assert "plain_words" in operations.operation_names()
    assert "quotes_price" in all_rule_ids()

    def reply(messages, purpose):  # every answer quotes a price: the plugin's rule eliminates every child
        return "It costs $5." if purpose == "respond" else scripted_reply(messages, purpose)

    store = Store(str(tmp_path / "ops.db"))
    run_id = pipeline.create_run(store, [Seed("Explain tides."), Seed("Name three rivers.")],
                                 RunConfig(rounds=1, operation_weights={"plain_words": 1.0}, concurrency=2))
    pipeline.run_sync(store, run_id, backend=FakeBackend(handler=reply))
    children = [n for n in store.nodes(run_id) if n.round == 1]
    assert children and all(n.operation == "plain_words" for n in children)
    assert all(n.prompt.startswith("Rewrite the task below in plain words") for n in children)
    assert {(n.status, n.rule) for n in children} == {("eliminated", "quotes_price")}
    assert [p["name"] for p in store.get_run(run_id)["config"].plugins] == ["quotes_price", "plain_words"]
    store.close()
