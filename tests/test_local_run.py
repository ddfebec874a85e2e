"""End to end on the real embedded model (llama.cpp + SmolLM2-135M), through the CLI, with no --base-url.

Slow (about a minute on two CPU threads). The model's wording is not checked, only the structure of
what the run stored. Set EVOLAB_SKIP_LOCAL_MODEL=1 to skip it deliberately.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import free_port

from evolab.llm.local import LOCAL_MODEL_ALIAS, is_serving
from evolab.store import Store

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(os.environ.get("EVOLAB_SKIP_LOCAL_MODEL") == "1",
                                reason="EVOLAB_SKIP_LOCAL_MODEL=1")


def run_on_a_port_of_its_own(tmp_path: Path, seeds: Path, attempts: int = 5) -> tuple[int, Path, float,
                                                                                     subprocess.CompletedProcess]:
    """`evolab run` on the embedded model, which the CLI starts on EVOLAB_LOCAL_PORT. That port is free when
    picked but the server binds it later: when another process took it meanwhile (the server exits with
    "address already in use", or the CLI finds someone else's server there and starts none) the run is
    retried on another port, with a new store."""
    for attempt in range(attempts):
        port = free_port()
        home, db = tmp_path / f"home{attempt}", tmp_path / f"local{attempt}.db"
        env = {**os.environ, "EVOLAB_LOCAL_PORT": str(port), "EVOLAB_HOME": str(home)}
        for key in ("OPENAI_API_KEY", "EVOLAB_DEBUG", "EVOLAB_DB"):
            env.pop(key, None)
        start = time.time()
        r = subprocess.run([sys.executable, "-m", "evolab", "run", str(seeds), "--db", str(db), "--rounds", "1",
                            "--concurrency", "2"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
        elapsed = time.time() - start
        log = home / "local-server.log"  # written only by a server this CLI started
        if r.returncode == 0 and not log.exists():
            continue  # someone else's server answered on the port
        if r.returncode != 0 and log.exists() and "address already in use" in log.read_text(errors="replace").lower():
            continue  # taken between the pick and the bind
        return port, db, elapsed, r
    pytest.fail(f"no free port for the embedded model server in {attempts} attempts")


def test_two_seeds_one_round_on_the_embedded_model(tmp_path):
    seeds = tmp_path / "seeds.txt"
    seeds.write_text("Name three colours of the rainbow.\nWhat is the capital of France?\n", encoding="utf-8")
    port, db, elapsed, r = run_on_a_port_of_its_own(tmp_path, seeds)
    assert r.returncode == 0, f"exit {r.returncode} after {elapsed:.0f} s\n{r.stdout}\n{r.stderr}"
    assert "the embedded local model" in r.stderr

    store = Store(db)
    try:
        (run,) = store.list_runs()
        cfg = run["config"]
        assert run["status"] == "finished"
        assert (cfg.base_url, cfg.model) == (None, LOCAL_MODEL_ALIAS)
        nodes = store.nodes(run["id"])
        seeds_, children = [n for n in nodes if n.round == 0], [n for n in nodes if n.round == 1]
        assert len(seeds_) == 2 and len(children) == 2
        assert all(n.status == "seed" for n in seeds_)
        assert {c.parent_id for c in children} == {s.id for s in seeds_}
        for c in children:
            assert c.status in ("kept", "eliminated", "failed")
            assert c.root_id == c.parent_id and c.operation != "seed"
            if c.status == "failed":
                assert c.rule == "llm_error"
            else:
                assert c.template and c.prompt and c.raw_output is not None
                if c.status == "eliminated":
                    assert c.rule and c.detail
        calls = store.calls(run["id"])
        ok = [c for c in calls if c.error is None]
        assert ok and all(c.model == LOCAL_MODEL_ALIAS and c.cost_usd == 0.0 for c in calls)
        assert {c.purpose for c in ok} >= {"evolve", "respond"}
        assert all(c.completion_tokens > 0 for c in ok if c.purpose == "respond")
        assert all(s.response for s in seeds_)  # the seeds were answered as the round-0 baseline
    finally:
        store.close()
    # The CLI stopped the server it started.
    deadline = time.time() + 15
    while is_serving(port) and time.time() < deadline:
        time.sleep(0.5)
    assert not is_serving(port)
