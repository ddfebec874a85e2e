"""`--batch ray` and `embed --ray` (evolab/engine/raybatch.py, evolab/embeddings/raymap.py) on one local Ray
instance shared by this module (2 CPUs, no dashboard, its session files in a temporary folder removed at the
end), against the stub server: the same tree as online, two endpoints both used, the key only in headers,
a 503 storm retried and counted, a killed driver resumed without paying a finished block twice, the embedding cache the Diversity page reads."""
from __future__ import annotations

import faulthandler
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ray.data.llm", reason="the Ray extra: pip install -r requirements-ray.txt (make test does)")

from conftest import STUB_KEY, STUB_KEY_ENV  # noqa: E402
from test_batch import SEEDS, cli_env, make_run, seeds_file, tree, varied_reply  # noqa: E402

from evolab.analysis.frames import map_embedder, nodes_frame  # noqa: E402
from evolab.embeddings import embed  # noqa: E402
from evolab.embeddings.raymap import RayEmbedder  # noqa: E402
from evolab.engine import pipeline, raybatch  # noqa: E402
from evolab.llm import raycluster  # noqa: E402
from evolab.schema import RuleConfig  # noqa: E402
from evolab.store import Store  # noqa: E402
from evolab.testing.stub_server import StubServer  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FAST = raybatch.RayOptions(workers=1, block_rows=4, retry_wait_s=0.05)


@pytest.fixture(scope="module")
def ray_address():
    """One local Ray for the module; its sessions under a short temporary folder (Unix socket paths are short)."""
    import ray

    assert not ray.is_initialized()
    temp = tempfile.mkdtemp(prefix="evray-", dir="/tmp")
    on_term, faults = signal.getsignal(signal.SIGTERM), faulthandler.is_enabled()
    try:
        yield raycluster.connect(num_cpus=2, temp_dir=temp)
    finally:
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)
        # What ray.init changes in this process is put back for the tests that follow.
        assert signal.getsignal(signal.SIGTERM) is on_term  # connect keeps the process's own handler
        if not faults:
            faulthandler.disable()


def session_logs() -> str:
    import ray

    logs = Path(ray._private.worker._global_node.get_session_dir_path()) / "logs"
    text = []
    for f in logs.rglob("*"):
        if f.is_file():
            try:
                text.append(f.read_text(errors="replace"))
            except OSError:
                pass
    return "\n".join(text)


def test_a_two_round_run_on_ray_makes_the_online_tree_across_two_endpoints(tmp_path, ray_address):
    with StubServer(handler=varied_reply) as a, StubServer(handler=varied_reply) as b:
        online, on_ray = Store(tmp_path / "online.db"), Store(tmp_path / "ray.db")
        # Three stages a round (evolve, respond, difficulty): each a Dataset, whose actors take seconds to start.
        cfg = dict(random_seed=3, api_key_env=STUB_KEY_ENV, rules=RuleConfig(use_equal_judge=False),
                   scorers=["complexity", "difficulty"])
        make_run(online, a, **cfg)
        make_run(on_ray, a, **cfg)
        assert pipeline.run_sync(online, "run-a") == "finished"
        a.reset()
        # A 503 storm on the second endpoint: Ray retries with backoff (max_retries=1: two attempts), a request
        # refused on both comes back as a failed line (not a failed Dataset) and goes into the next job.
        b.inject(*[503] * 6)
        opts = raybatch.RayOptions(endpoints=[a.base_url, b.base_url], workers=1, block_rows=4, retry_wait_s=0.02,
                                   max_retries=1)
        logged: list[str] = []
        assert raybatch.run_on_ray(on_ray, "run-a", opts, log=logged.append) == "finished"
        assert tree(on_ray, "run-a") == tree(online, "run-a")
        assert json.loads(on_ray.get_meta("ray|run-a"))["refused"] == 6  # every 503 counted
        assert any("refused with 429/503 and retried" in line for line in logged)
        # Requests spread across both endpoints; each carried the key in its header and the online purpose.
        sent = [r for s in (a, b) for r in s.chat_requests()]
        assert a.count() > 3 and b.count() > 3
        assert all(r["headers"].get("authorization") == f"Bearer {STUB_KEY}" for r in sent)
        assert {r["purpose"] for r in sent} >= {"evolve", "respond", "difficulty"}
        assert any(" requests answered" in line for line in logged)
        jobs = on_ray.batches("run-a")
        assert jobs and all(j["engine"] == "ray" and j["status"] == "completed" for j in jobs)
        # The key is in no Ray job file, no Dataset row and no Ray log.
        folder = raybatch.job_root(on_ray, "run-a")
        files = [p for p in folder.rglob("*") if p.is_file()]
        assert any(p.name.startswith("block-") for p in files)
        assert not [p for p in files if STUB_KEY in p.read_text(errors="replace")]
        transport = raybatch.RayBatches(on_ray, "run-a", on_ray.get_run("run-a")["config"], opts)
        todo = [json.loads(x) for x in (sorted(folder.glob("job-*"))[0] / "input.jsonl").read_text().splitlines()]
        inputs, output = transport.datasets(todo)
        rows = inputs.take_all() + output.take_all()
        assert len(rows) == 2 * len(todo) and not [r for r in rows if STUB_KEY in repr(r)]
        assert STUB_KEY not in session_logs()
        # The Runs page's batch line names the Ray jobs and how to go on.
        from evolab.app import support

        info = support.batch_info(on_ray, "run-a")
        assert "Ray-backed run" in info["text"] and not info["uses_batch"]


def test_rpm_becomes_the_pace_of_each_worker():
    config = make_config(rpm=600, tpm=None)
    assert raybatch.pacing(config, [], workers=2) == (5.0, 5)
    body = {"messages": [{"role": "user", "content": "x" * 392}], "max_tokens": 100}  # ~200 tokens a request
    assert raybatch.pacing(make_config(rpm=None, tpm=60_000), [body], workers=1)[0] == pytest.approx(5.0, rel=0.05)
    assert raybatch.pacing(make_config(rpm=None, tpm=None), [body], workers=1) == (None, None)


def make_config(**kw):
    from evolab.schema import RunConfig

    return RunConfig(**{"model": "gpt-4o-mini", "base_url": "http://127.0.0.1:9/v1", **kw})


def test_a_killed_driver_resumes_without_paying_a_finished_block_twice(tmp_path, ray_address):
    db = tmp_path / "kill.db"
    with StubServer(handler=varied_reply, latency=0.15) as stub:
        args = [sys.executable, "-m", "evolab", "run", seeds_file(tmp_path), "--db", db, "--rounds", 1,
                "--base-url", stub.base_url, "--model", "gpt-4o-mini", "--api-key-env", STUB_KEY_ENV,
                "--batch", "ray", "--ray-address", ray_address, "--ray-workers", 1, "--ray-block-rows", 1]
        proc = subprocess.Popen([str(a) for a in args], cwd=ROOT, env=cli_env(tmp_path),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        folder = Path(f"{db}.runs")
        try:
            deadline = time.monotonic() + 180
            while len(list(folder.rglob("block-*.jsonl"))) < 2:
                assert proc.poll() is None, proc.stderr.read().decode()
                assert time.monotonic() < deadline, "no two blocks within 180 s"
                time.sleep(0.02)
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            proc.wait(timeout=30)
        finished = {json.loads(line)["custom_id"] for block in folder.rglob("block-*.jsonl")
                    for line in block.read_text().splitlines()}
        bodies = {json.loads(x)["custom_id"]: json.loads(x)["body"] for job in folder.rglob("input.jsonl")
                  for x in job.read_text().splitlines()}
        assert len(finished) >= 2 and Store(db).get_run(Store(db).latest_run_id())["status"] != "finished"
        cut_short = [job for job in folder.rglob("job-*") if not (job / "done").exists()]
        r = subprocess.run([sys.executable, "-m", "evolab", "resume", "--db", str(db), "--take-over", "--batch", "ray",
                            "--ray-address", ray_address], cwd=ROOT, env=cli_env(tmp_path), capture_output=True,
                           text=True, timeout=240)
        assert r.returncode == 0, r.stderr
        if cut_short:  # the job the kill cut short goes on with what its blocks did not answer
            assert "going on with the requests no finished block answered" in r.stderr
        store = Store(db)
        run_id = store.latest_run_id()
        assert store.get_run(run_id)["status"] == "finished"
        # Each request a finished block answered reached the endpoint once: never paid twice.
        for custom_id in finished:
            sent = [q for q in stub.chat_requests() if q["body"]["messages"] == bodies[custom_id]["messages"]]
            assert len(sent) == 1, custom_id
        # The resumed run is the online run.
        online = Store(tmp_path / "online.db")
        online_id = online.create_run(store.get_run(run_id)["config"], list(SEEDS))
        assert pipeline.run_sync(online, online_id) == "finished"
        assert len(store.nodes(run_id)) == len(online.nodes(online_id))
        assert sorted((n.round, n.status, n.instruction) for n in store.nodes(run_id)) == \
            sorted((n.round, n.status, n.instruction) for n in online.nodes(online_id))


def test_without_ray_batch_ray_says_how_to_install_it(tmp_path):
    fake = tmp_path / "noray" / "ray"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError(\"No module named 'ray'\")\n")
    env = {**cli_env(tmp_path), "PYTHONPATH": str(fake.parent)}
    db = tmp_path / "none.db"
    for args in (["run", str(seeds_file(tmp_path)), "--db", str(db), "--base-url", "http://127.0.0.1:9/v1",
                  "--model", "m", "--batch", "ray"],
                 ["embed", "--db", str(db), "--run", "latest", "--ray"]):
        r = subprocess.run([sys.executable, "-m", "evolab", *args], cwd=ROOT, env=env, capture_output=True,
                           text=True, timeout=120)
        assert r.returncode == 2, r.stderr
        assert "pip install -r requirements-ray.txt" in r.stderr
    assert not db.exists()  # refused before a run was created


def test_embed_on_ray_fills_the_cache_the_diversity_page_reads(tmp_path, ray_address):
    store = Store(tmp_path / "embed.db")
    with StubServer(handler=varied_reply) as stub:
        make_run(store, stub, rounds=1)
        assert pipeline.run_sync(store, "run-a") == "finished"
    nodes = nodes_frame(store, "run-a")
    embedder = map_embedder(nodes)
    texts = embed.node_texts(nodes)
    assert embed.count_unembedded(texts, embedder, store) == len(set(texts)) > 5
    logged: list[str] = []
    on_ray = embed.embed_nodes(nodes, RayEmbedder(embedder, actors=2, batch_rows=4, log=logged.append), store)
    assert embed.count_unembedded(texts, embedder, store) == 0  # under the embedder's own name: the page finds them
    assert any(f"of {len(set(texts))}" in line for line in logged)
    here = embedder.encode(texts)
    assert np.allclose(on_ray, here, atol=1e-4)


@pytest.mark.parametrize("extra, named", [(["--ray-address", "127.0.0.1:1"], "--ray-address"),
                                          (["--batch", "ray", "--ray-workers", "0"], "--ray-workers"),
                                          (["--batch", "ray", "--ray-endpoint", "gpu-1:8000/v1"], "--ray-endpoint")])
def test_bad_ray_options_are_exit_2_before_a_run_exists(tmp_path, capsys, extra, named):
    from evolab.cli.main import main

    db = tmp_path / "bad.db"
    status = main(["run", str(seeds_file(tmp_path)), "--db", str(db), "--base-url", "http://127.0.0.1:9/v1",
                   "--model", "m", *extra])
    assert status == 2 and named in capsys.readouterr().err
    assert not db.exists()
