"""`--batch ray`: a stage's waiting requests go out as a Ray Dataset through Ray Data's LLM API
(`ray.data.llm.build_processor` with `HttpRequestProcessorConfig`) instead of a provider's batch job.

Not a second engine: `RayBatches` is a transport of `batch.run_batched`, beside `batch.OpenAIBatches`, so the
steps, the cache, the calls table and the resume logic are the provider batch's, and the tree is the run's
online tree. A job is a folder `<db>.runs/<run>/ray/job-N/`: `input.jsonl` (the requests, OpenAI's batch
format, no key), then one `block-*.jsonl` per Dataset block as it finishes (OpenAI's output format), then
`done`. A killed driver leaves the finished blocks; `resume --batch ray` polls the stored job, which sends only
the requests no block answered, then imports every block. So no request is paid twice beyond the blocks in
flight. The key travels in the processor's headers only (docs/ray.md).
"""
from __future__ import annotations

import functools
import json
import math
import os
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from evolab.engine.batch import BatchError, BatchOptions, PollPolicy, run_batched
from evolab.llm.base import mask_secrets
from evolab.llm.openai_backend import resolve_api_key
from evolab.llm.raycluster import GAVE_UP, EvolabSession, connect, row_payload
from evolab.schema import RunConfig
from evolab.store import Store

# A Ray job is polled on this machine's disk, not a provider's API: short waits.
RAY_POLL = PollPolicy(first_s=0.1, max_s=1.0, factor=1.5, jitter=0.0)
DEFAULT_BLOCK_ROWS = 64  # requests per Dataset block: the unit of resume (a kill loses at most the blocks in flight)
DEFAULT_BATCH_ROWS = 16  # requests per batch of a worker (all in flight at once, paced)
DEFAULT_MAX_RETRIES = 5  # Ray's max_retries for a 429/503/timeout, waits base * 2^attempt


@dataclass
class RayOptions:
    """What `--batch ray` and its options ask for; `batch` holds the options every batch mode shares."""

    endpoints: list[str] = field(default_factory=list)  # /v1 base URLs; empty: the run's --base-url
    address: str | None = None  # a cluster to join (or $RAY_ADDRESS); None: a local Ray with this machine's cores
    workers: int = 2  # Ray actors sending requests, per endpoint
    block_rows: int = DEFAULT_BLOCK_ROWS
    batch_rows: int = DEFAULT_BATCH_ROWS
    max_retries: int = DEFAULT_MAX_RETRIES
    retry_wait_s: float = 1.0
    # A worker waits on the network: a quarter of a CPU each (Ray's default of 1 would leave a 2-core machine
    # two workers and nothing for the rest of the Dataset).
    worker_cpus: float = 0.25
    batch: BatchOptions = field(default_factory=lambda: BatchOptions(poll=RAY_POLL))

    def __post_init__(self) -> None:
        if self.workers < 1 or self.block_rows < 1 or self.batch_rows < 1:
            raise ValueError("--ray-workers, --ray-block-rows and --ray-batch-rows must be at least 1.")
        for url in self.endpoints:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"--ray-endpoint {url!r} is not an http(s) URL of an OpenAI-compatible /v1.")


def job_root(store: Store, run_id: str) -> Path:
    """The run's folder for Ray jobs, beside the store (as `<db>.umap/` is)."""
    return Path(f"{store.path}.runs") / run_id / "ray"


def pacing(config: RunConfig, requests: list[dict[str, Any]], workers: int) -> tuple[float | None, int | None]:
    """(requests a second each worker may start, Ray's integer `qps`) from the run's --rpm and --tpm: the slower
    of the two, with --tpm read as requests through the stage's mean of prompt (4 characters a token) plus
    max_tokens. None: no cap (the endpoint's 429s still slow it: Ray retries them with backoff)."""
    rates = []
    if config.rpm:
        rates.append(config.rpm / 60.0)
    if config.tpm and requests:
        tokens = [len(json.dumps(r.get("messages") or "", ensure_ascii=False)) / 4
                  + (r.get("max_tokens") or r.get("max_completion_tokens") or 0) for r in requests]
        rates.append(config.tpm / 60.0 / max(1.0, sum(tokens) / len(tokens)))
    if not rates:
        return None, None
    per_worker = min(rates) / workers
    return per_worker, max(1, math.ceil(per_worker))


class RayBatches:
    """The transport of `batch.run_batched` for Ray (module doc): upload writes the job's input file, create
    starts the Dataset in a thread of the driver, retrieve says how far it got (and restarts a job a killed
    driver left, for the requests no block answered), content reads its blocks."""

    engine = "ray"

    def __init__(self, store: Store, run_id: str, config: RunConfig, options: RayOptions,
                 log: Callable[[str], None] | None = None):
        if not config.base_url:
            raise BatchError("--batch ray needs the run's endpoint (--base-url): Ray's HTTP processor sends the "
                             "requests to an OpenAI-compatible server (see docs/ray.md for vLLM on the cluster).")
        self.config, self.options = config, options
        self.root = job_root(store, run_id)
        self.endpoints = [u.rstrip("/") for u in (options.endpoints or [config.base_url])]
        self.log = log or (lambda _msg: None)
        # Read once, kept in this object only: it goes into the processor's headers, never a row or a file.
        self._key = resolve_api_key(config.api_key_env, config.base_url,
                                    restrict_names=getattr(config, "restrict_key_env", False))
        self.address = connect(options.address)
        self._threads: dict[str, threading.Thread] = {}
        self._errors: dict[str, str] = {}
        self._stop: dict[str, threading.Event] = {}
        self._progress: dict[str, tuple[int, int]] = {}  # job -> (requests answered, requests) while it runs
        self.refused = 0  # 429/503/timeouts Ray retried, in the blocks this driver read
        self.per_worker: Counter[int] = Counter()  # requests answered by each worker process (its pid)

    # -- the transport --------------------------------------------------------------------------------------
    def upload(self, data: bytes) -> str:
        self.root.mkdir(parents=True, exist_ok=True)
        n = 1 + sum(1 for p in self.root.iterdir() if p.name.startswith("job-"))
        folder = self.root / f"job-{n}-{time.time_ns()}"
        folder.mkdir()
        _write_atomic(folder / "input.jsonl", data)
        return str(folder / "input.jsonl")

    def create(self, input_file_id: str) -> dict[str, Any]:
        job = str(Path(input_file_id).parent)
        self._start(job)
        return {"id": job, "status": "in_progress"}

    def find_by_input(self, input_file_id: str) -> dict[str, Any] | None:
        return {"id": str(Path(input_file_id).parent), "status": "in_progress"} \
            if Path(input_file_id).is_file() else None

    def retrieve(self, job: str) -> dict[str, Any]:
        folder = Path(job)
        if not (folder / "input.jsonl").is_file():
            return {"id": job, "status": "failed", "errors": {"data": [
                {"code": "missing", "message": f"the job folder {job} is gone"}]}}
        thread = self._threads.get(job)
        if not (folder / "done").exists() and (thread is None or not thread.is_alive()) and job not in self._errors:
            self.log(f"ray job {folder.name}: going on with the requests no finished block answered")
            self._start(job)  # a job a killed driver left: its finished blocks stay, the rest go out again
            thread = self._threads[job]
        # The running Dataset's count (reading every block at each poll would cost the driver O(n) a poll).
        answered, total = self._progress.get(job) or _count(folder)
        counts = {"completed": answered, "failed": 0, "total": total}
        if job in self._errors:
            return {"id": job, "status": "failed", "request_counts": counts, "output_file_id": job,
                    "errors": {"data": [{"code": "ray", "message": self._errors[job]}]}}
        if (folder / "done").exists():
            status = (folder / "done").read_text(encoding="utf-8").strip() or "completed"
            return {"id": job, "status": status, "request_counts": counts, "output_file_id": job}
        return {"id": job, "status": "in_progress", "request_counts": counts}

    def content(self, job: str) -> bytes:
        return b"".join(p.read_bytes() for p in sorted(Path(job).glob("block-*.jsonl")))

    def cancel(self, job: str) -> dict[str, Any]:
        if job in self._stop:
            self._stop[job].set()
        _write_atomic(Path(job) / "done", b"cancelled")
        return {"id": job, "status": "cancelled"}

    # -- the Dataset ----------------------------------------------------------------------------------------
    def datasets(self, todo: list[dict[str, Any]]) -> tuple[Any, Any]:
        """(the input Dataset, the processed Dataset) for these batch lines: every request a row {custom_id,
        payload}, the endpoints taken in turn (evolab's session posts each row to its own endpoint, so one
        processor and one pool of actors serve them all), the key in the processor's headers only."""
        import ray.data  # heavy: ray, only for --batch ray
        from ray.data.llm import HttpRequestProcessorConfig, build_processor  # heavy: ray's LLM API

        opts = self.options
        workers = opts.workers * len(self.endpoints)
        per_worker, qps = pacing(self.config, [line["body"] for line in todo], workers)
        headers = {"Authorization": f"Bearer {self._key}"} if self._key else {}
        session = functools.partial(EvolabSession, per_worker_rps=per_worker, max_retries=opts.max_retries)
        rows = [{"custom_id": line["custom_id"],
                 "payload": row_payload(self.endpoints[i % len(self.endpoints)] + "/chat/completions",
                                        line["custom_id"].split(":", 1)[0], line["body"])}
                for i, line in enumerate(todo)]
        processor = build_processor(
            HttpRequestProcessorConfig(url=self.endpoints[0] + "/chat/completions", headers=headers, qps=qps,
                                       concurrency=workers, batch_size=opts.batch_rows, max_retries=opts.max_retries,
                                       base_retry_wait_time_in_s=opts.retry_wait_s, session_factory=session,
                                       http_request_stage={"num_cpus": opts.worker_cpus}),
            postprocess=_result_row, postprocess_map_kwargs={"num_cpus": opts.worker_cpus})
        inputs = ray.data.from_items(rows, override_num_blocks=max(1, math.ceil(len(rows) / opts.block_rows)))
        return inputs, processor(inputs)

    def _start(self, job: str) -> None:
        stop = self._stop.setdefault(job, threading.Event())
        thread = threading.Thread(target=self._run, args=(job, stop), name=f"ray-{Path(job).name}", daemon=True)
        self._threads[job] = thread
        thread.start()

    def _run(self, job: str, stop: threading.Event) -> None:
        try:
            self._send(Path(job), stop)
        except Exception as e:  # the Dataset failed: its finished blocks are imported, the rest sent again
            self._errors[job] = mask_secrets(f"{type(e).__name__}: {e}")[:500].replace(self._key or "\0", "***")

    def _send(self, folder: Path, stop: threading.Event) -> None:
        lines = [json.loads(x) for x in (folder / "input.jsonl").read_bytes().splitlines() if x.strip()]
        done = _answered_ids(folder)
        todo = [line for line in lines if line["custom_id"] not in done]
        if not todo:
            _write_atomic(folder / "done", b"completed")
            return
        _inputs, ds = self.datasets(todo)
        answered, n = len(done), len(lines)
        self._progress[str(folder)] = (answered, n)
        for block in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
            rows = block.to_pylist()
            _write_atomic(folder / f"block-{time.time_ns()}.jsonl",
                          "".join(r["line"] + "\n" for r in rows).encode("utf-8"))
            answered += len(rows)
            self._progress[str(folder)] = (answered, n)
            self.refused += sum(int(r["refused"]) for r in rows)
            self.per_worker.update(int(r["worker"]) for r in rows)
            self.log(f"ray job {folder.name}: {answered:,} of {n:,} requests answered"
                     + (f" ({self.refused:,} refused with 429/503 and retried)" if self.refused else ""))
            if stop.is_set():
                return
        _write_atomic(folder / "done", b"completed")


def _result_row(row: dict[str, Any]) -> dict[str, Any]:
    """A Dataset row back as a line of OpenAI's batch output format (what `batch.read_results` reads), and how
    often it was refused. Runs in Ray's workers; the payload (request) is dropped, and no header is in a row."""
    reply = row["http_response"]
    status, text = int(reply["status"]), reply["text"]
    try:
        body: Any = json.loads(text)
    except ValueError:
        body = {"error": {"message": text[:500]}}
    line: dict[str, Any] = {"custom_id": row["custom_id"], "response": {"status_code": status, "body": body}}
    if status == GAVE_UP:
        line = {"custom_id": row["custom_id"], "response": None, "error": {"code": "ray", "message": text[:500]}}
    return {"line": json.dumps(line, ensure_ascii=False), "refused": int(reply.get("refused") or 0),
            "worker": int(reply.get("worker") or 0)}


def _answered_ids(folder: Path) -> set[str]:
    ids = set()
    for block in folder.glob("block-*.jsonl"):
        for raw in block.read_bytes().splitlines():
            if raw.strip():
                ids.add(json.loads(raw)["custom_id"])
    return ids


def _count(folder: Path) -> tuple[int, int]:
    total = sum(1 for x in (folder / "input.jsonl").read_bytes().splitlines() if x.strip())
    return len(_answered_ids(folder)), total


def _write_atomic(path: Path, data: bytes) -> None:
    """A block is in the folder whole or not at all (a kill mid-write leaves a .tmp, never half a block)."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def run_on_ray(store: Store, run_id: str, options: RayOptions, *, until_round: int | None = None,
               stop_event: threading.Event | None = None, progress: Callable | None = None,
               log: Callable[[str], None] | None = None, backend: Any = None) -> str:
    """Run (or resume) a stored run with each stage as a Ray Dataset (module doc). Returns the final status."""
    run = store.get_run(run_id)
    if run is None:
        raise KeyError(f"No run {run_id!r} in {store.path}.")
    log = log or (lambda _msg: None)
    transport = RayBatches(store, run_id, run["config"], options, log)
    log(f"ray: {transport.address}, {options.workers} worker(s) per endpoint, {len(transport.endpoints)} "
        f"endpoint(s)")
    status = run_batched(store, run_id, backend=backend, transport=transport, options=options.batch,
                         until_round=until_round, stop_event=stop_event, progress=progress, log=log)
    store.set_meta(f"ray|{run_id}", json.dumps({"refused": transport.refused, "endpoints": len(transport.endpoints),
                                                "workers": options.workers, "at": time.time()}))
    return status
