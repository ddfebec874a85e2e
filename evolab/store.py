"""SQLite store: runs, nodes, LLM calls, scores, embeddings, the request cache, seed sets, judgments.

WAL mode so the app can read while a CLI run or a worker writes; every completed step is one
transaction (`record_step`). Schema changes are numbered migrations applied on open.
"""
from __future__ import annotations

import hashlib
import json
import logging
import queue
import sqlite3
import threading
import time
import uuid
from concurrent.futures import Future
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator

from evolab.schema import LLMCall, Node, RunConfig, Score, Seed

# Each entry moves the schema from version i to i+1. Append, never edit a shipped one.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE runs (
        id TEXT PRIMARY KEY,
        name TEXT,
        status TEXT NOT NULL,
        config_json TEXT NOT NULL,
        seeds_json TEXT NOT NULL,
        seed_set TEXT,
        error TEXT,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE TABLE nodes (
        id TEXT PRIMARY KEY,
        run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        parent_id TEXT,
        root_id TEXT NOT NULL,
        round INTEGER NOT NULL,
        operation TEXT NOT NULL,
        instruction TEXT NOT NULL,
        input TEXT NOT NULL DEFAULT '',
        response TEXT,
        status TEXT NOT NULL,
        rule TEXT,
        detail TEXT,
        skill TEXT,
        seed_difficulty REAL,
        language TEXT,
        template TEXT,
        template_version TEXT,
        prompt TEXT,
        raw_output TEXT,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE INDEX nodes_run ON nodes(run_id, round);
    CREATE INDEX nodes_parent ON nodes(parent_id);
    CREATE TABLE calls (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id TEXT,
        node_id TEXT,
        purpose TEXT NOT NULL,
        model TEXT NOT NULL,
        prompt_tokens INTEGER NOT NULL DEFAULT 0,
        completion_tokens INTEGER NOT NULL DEFAULT 0,
        latency_s REAL NOT NULL DEFAULT 0,
        cost_usd REAL NOT NULL DEFAULT 0,
        price_known INTEGER NOT NULL DEFAULT 1,
        cached INTEGER NOT NULL DEFAULT 0,
        error TEXT,
        request_hash TEXT,
        created_at REAL NOT NULL
    );
    CREATE INDEX calls_run ON calls(run_id);
    CREATE TABLE scores (
        node_id TEXT NOT NULL,
        metric TEXT NOT NULL,
        value REAL,
        judge TEXT NOT NULL,
        detail TEXT,
        created_at REAL NOT NULL,
        PRIMARY KEY (node_id, metric, judge)
    );
    CREATE TABLE embeddings (
        model TEXT NOT NULL,
        text_hash TEXT NOT NULL,
        dim INTEGER NOT NULL,
        vector BLOB NOT NULL,
        PRIMARY KEY (model, text_hash)
    );
    CREATE TABLE cache (
        key TEXT PRIMARY KEY,
        model TEXT NOT NULL,
        response_json TEXT NOT NULL,
        created_at REAL NOT NULL
    );
    CREATE TABLE seed_sets (
        name TEXT PRIMARY KEY,
        seeds_json TEXT NOT NULL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE TABLE judgments (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        comparison TEXT NOT NULL,
        item_key TEXT NOT NULL,
        label_a TEXT NOT NULL,
        label_b TEXT NOT NULL,
        node_a TEXT,
        node_b TEXT,
        first_verdict TEXT,
        second_verdict TEXT,
        outcome TEXT,
        judge TEXT NOT NULL,
        detail TEXT,
        created_at REAL NOT NULL,
        UNIQUE (comparison, item_key, judge)
    );
    """,
    # 2: reasoning models' hidden tokens (part of completion_tokens, billed as output)
    """
    ALTER TABLE calls ADD COLUMN reasoning_tokens INTEGER NOT NULL DEFAULT 0;
    """,
    # issue 11: adaptive operation sampling, one row per decision (the posterior used, the draw, the reward)
    """
    CREATE TABLE op_decisions (
        node_id TEXT PRIMARY KEY,
        run_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        language TEXT NOT NULL,
        operation TEXT NOT NULL,
        posterior_json TEXT NOT NULL,
        draws_json TEXT NOT NULL,
        reward REAL,
        reward_detail TEXT,
        created_at REAL NOT NULL
    );
    CREATE INDEX op_decisions_run ON op_decisions(run_id, seq);
    """,
    # issue 12: a person's review of a node, beside the rules' verdicts (the latest per node counts)
    """
    CREATE TABLE reviews (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        node_id TEXT NOT NULL,
        run_id TEXT NOT NULL,
        reviewer TEXT,
        verdict TEXT NOT NULL CHECK (verdict IN ('keep', 'discard', 'skip')),
        note TEXT,
        reasons_json TEXT NOT NULL,
        applied INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL
    );
    CREATE INDEX reviews_run ON reviews(run_id, node_id);
    """,
    # issue 12: answers checked by self-consistency (evolab/engine/checking.py), one row per checked node: its status,
    # the number read from the answer and from each of the k samples, and how each number was read
    """
    CREATE TABLE answer_checks (
        node_id TEXT PRIMARY KEY,
        run_id TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('consistent', 'inconsistent', 'not_checkable')),
        reason TEXT,
        answer_value REAL,
        agreeing INTEGER,
        k INTEGER NOT NULL,
        temperature REAL,
        tolerance REAL,
        model TEXT,
        readings_json TEXT NOT NULL,
        created_at REAL NOT NULL
    );
    CREATE INDEX answer_checks_run ON answer_checks(run_id);
    """,
    # issue 11: template versions (the shipped files are the implicit roots), tuning sessions and their candidates
    """
    CREATE TABLE template_versions (
        operation TEXT NOT NULL,
        language TEXT NOT NULL,
        hash TEXT NOT NULL,
        name TEXT NOT NULL,
        text TEXT NOT NULL,
        parent_version TEXT,
        note TEXT,
        created_at REAL NOT NULL,
        PRIMARY KEY (operation, language, hash),
        UNIQUE (operation, language, name)
    );
    CREATE TABLE tuning_sessions (
        id TEXT PRIMARY KEY,
        run_id TEXT NOT NULL,
        operation TEXT NOT NULL,
        language TEXT NOT NULL,
        parent_version TEXT NOT NULL,
        status TEXT NOT NULL,
        detail TEXT,
        settings_json TEXT NOT NULL,
        failures_json TEXT,
        optimizer_reply TEXT,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE TABLE tuning_candidates (
        session_id TEXT NOT NULL,
        idx INTEGER NOT NULL,
        hash TEXT NOT NULL,
        text TEXT NOT NULL,
        rationale TEXT,
        status TEXT NOT NULL,
        reason TEXT,
        dev_run_id TEXT,
        measures_json TEXT,
        adopted_as TEXT,
        created_at REAL NOT NULL,
        PRIMARY KEY (session_id, idx)
    );
    """,
    # issue 13: a round as batch jobs (evolab/engine/batch.py): one row per job (stored as soon as it is created, so a
    # killed process polls it again instead of submitting it twice), one per request line in it; calls a batch
    # job answered are flagged (billed at the batch price)
    """
    CREATE TABLE batches (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id TEXT NOT NULL,
        pass INTEGER NOT NULL,
        engine TEXT NOT NULL,
        provider_batch_id TEXT,
        input_file_id TEXT,
        output_file_id TEXT,
        error_file_id TEXT,
        status TEXT NOT NULL,
        n_requests INTEGER NOT NULL DEFAULT 0,
        n_completed INTEGER NOT NULL DEFAULT 0,
        n_failed INTEGER NOT NULL DEFAULT 0,
        imported INTEGER NOT NULL DEFAULT 0,
        error TEXT,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE INDEX batches_run ON batches(run_id);
    CREATE TABLE batch_lines (
        batch_id INTEGER NOT NULL,
        custom_id TEXT NOT NULL,
        request_hash TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'sent',
        error TEXT,
        PRIMARY KEY (batch_id, custom_id)
    );
    CREATE INDEX batch_lines_hash ON batch_lines(request_hash);
    ALTER TABLE calls ADD COLUMN batch INTEGER NOT NULL DEFAULT 0;
    """,
    # issue 10: growing a seed set (evolab/seeds/craft.py): one row per grow job, one per candidate it read (kept or
    # rejected and why), written as each call completes so a job resumes where it stopped
    """
    CREATE TABLE grow_jobs (
        id TEXT PRIMARY KEY,
        config_json TEXT NOT NULL,
        status TEXT NOT NULL,
        error TEXT,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE TABLE grow_candidates (
        job_id TEXT NOT NULL,
        call_index INTEGER NOT NULL,
        position INTEGER NOT NULL,
        instruction TEXT NOT NULL,
        input TEXT NOT NULL DEFAULT '',
        status TEXT NOT NULL,
        reason TEXT,
        detail TEXT,
        seed_json TEXT,
        created_at REAL NOT NULL,
        PRIMARY KEY (job_id, call_index, position)
    );
    """,
    # issue 10: seed set versions (every save that changes a set adds one; evolab/seeds/versions.py diffs them);
    # a run records the version of its seed set it used (NULL when its seeds were not a saved version)
    """
    CREATE TABLE seed_set_versions (
        name TEXT NOT NULL,
        version INTEGER NOT NULL,
        seeds_json TEXT NOT NULL,
        content_hash TEXT,
        note TEXT,
        created_at REAL NOT NULL,
        PRIMARY KEY (name, version)
    );
    INSERT INTO seed_set_versions (name, version, seeds_json, content_hash, note, created_at)
        SELECT name, 1, seeds_json, NULL, 'saved before versions were kept', updated_at FROM seed_sets;
    ALTER TABLE runs ADD COLUMN seed_set_version INTEGER;
    """,
    # issue 22: a run's lease (evolab/engine/lease.py): the one engine that may run it, in any process; the holder
    # (host, pid, a random token) beats every few seconds and is taken over once it missed `expiry_s`
    """
    CREATE TABLE run_leases (
        run_id TEXT PRIMARY KEY,
        host TEXT NOT NULL,
        pid INTEGER NOT NULL,
        token TEXT NOT NULL,
        since REAL NOT NULL,
        heartbeat REAL NOT NULL,
        expiry_s REAL NOT NULL
    );
    """,
    # issue 27: a selection (evolab/analysis/select.py): how a training set was chosen from a run's kept nodes
    # (parameters, embedder, threshold) and, per candidate node, chosen or why it was skipped
    """
    CREATE TABLE selections (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        run_ids_json TEXT NOT NULL,
        params_json TEXT NOT NULL,
        embedder TEXT,
        threshold REAL,
        n_requested INTEGER NOT NULL,
        n_chosen INTEGER NOT NULL,
        out_path TEXT,
        out_format TEXT,
        created_at REAL NOT NULL
    );
    CREATE TABLE selection_items (
        selection_id INTEGER NOT NULL,
        node_id TEXT NOT NULL,
        rank INTEGER,
        score REAL,
        chosen INTEGER NOT NULL,
        reason TEXT,
        other_id TEXT,
        similarity REAL,
        PRIMARY KEY (selection_id, node_id)
    );
    """,
]

SCHEMA_VERSION = len(MIGRATIONS)
# Meta entries kept per run, by their key's prefix (the modules that write them use these): a deleted run leaves
# none behind. The map's warm-up state (evolab/analysis/warmup.py), a Ray job's figures (engine/raybatch.py) and
# the Review queue's candidates of one or several runs (audit/review.py).
RUN_META_PREFIXES = ("warm_map:", "ray|", "review_queue:")
NODE_FIELDS = [
    "id", "run_id", "parent_id", "root_id", "round", "operation", "instruction", "input", "response",
    "status", "rule", "detail", "skill", "seed_difficulty", "language", "template", "template_version",
    "prompt", "raw_output", "created_at",
]
FINAL_STATUSES = ("seed", "kept", "eliminated", "failed")


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def seed_set_hash(seeds: Iterable[Seed]) -> str:
    """A seed set's content hash: every field of every seed, in order (a reordered set is a new version)."""
    return text_hash(json.dumps([s.to_dict() for s in seeds], ensure_ascii=False, sort_keys=True))



def peek_schema(path: str | Path) -> tuple[set[str], str | None]:
    """The tables of the SQLite file at `path` and evolab's schema version in it (None: not an evolab store),
    read without writing anything: another program's database is never touched. Raises sqlite3.Error."""
    conn = sqlite3.connect(Path(path).resolve().as_uri() + "?mode=ro", uri=True)
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() if "meta" in tables else None
    finally:
        conn.close()
    return tables, (row[0] if row else None)


class Store:
    """One SQLite file. Safe to share between threads of one process and between processes."""

    def __init__(self, path: str | Path):
        self._writer: _Writer | None = None
        self._pending_cache: dict[str, dict[str, Any]] = {}
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(self.path, check_same_thread=False, timeout=30, isolation_level=None)
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute("PRAGMA busy_timeout=30000")
        try:
            self._migrate()
        except BaseException:
            self._conn.close()
            raise

    # -- plumbing -------------------------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic write. BEGIN IMMEDIATE takes the write lock up front so two processes queue. Inside another
        transaction of this connection (the writer thread's batches) it is a savepoint: it rolls back on its own
        and lands in the file with the enclosing transaction."""
        with self._lock:
            if self._conn.in_transaction:
                self._conn.execute("SAVEPOINT nested")
                try:
                    yield self._conn
                except BaseException:
                    self._conn.execute("ROLLBACK TO nested")
                    self._conn.execute("RELEASE nested")
                    raise
                else:
                    self._conn.execute("RELEASE nested")
                return
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            else:
                self._conn.execute("COMMIT")

    def query(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._conn.execute(sql, tuple(params)).fetchall()

    def query_tuples(self, sql: str, params: Iterable[Any] = ()) -> list[tuple]:
        """`query` as plain tuples: no Row object per row, for reads of tens of thousands of rows."""
        with self._lock:
            cursor = self._conn.cursor()
            cursor.row_factory = None
            return cursor.execute(sql, tuple(params)).fetchall()

    def _migrate(self) -> None:
        with self.transaction() as c:
            c.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            row = c.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            version = int(row[0]) if row else 0
            if version > SCHEMA_VERSION:
                raise RuntimeError(
                    f"{self.path} was written by a newer evolab (schema {version}, this one knows "
                    f"{SCHEMA_VERSION}): upgrade evolab to open it."
                )
            for i in range(version, SCHEMA_VERSION):
                for statement in MIGRATIONS[i].split(";"):
                    if statement.strip():
                        c.execute(statement)
            c.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))

    @property
    def schema_version(self) -> int:
        return int(self.query("SELECT value FROM meta WHERE key='schema_version'")[0][0])

    def get_meta(self, key: str) -> str | None:
        rows = self.query("SELECT value FROM meta WHERE key=?", (key,))
        return rows[0][0] if rows else None

    def set_meta(self, key: str, value: str) -> None:
        with self.transaction() as c:
            c.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def close(self) -> None:
        if self._writer is not None:
            self._writer.stop()
            self._writer = None
        with self._lock:
            self._conn.close()

    # -- writes off the event loop ----------------------------------------------------------------
    def submit(self, method: str, *args: Any) -> "Future[Any]":
        """Run `getattr(store, method)(*args)` on the writer thread, in submission order, on its own
        connection: a run's event loop never waits for SQLite's write lock (another process may hold it for
        seconds), and reads on this connection are not held up by a waiting write. Await the future where
        order matters (`asyncio.wrap_future`); calls and cache rows are fire-and-forget, flushed by `flush()`."""
        if self.path == ":memory:":  # a second connection would be another database
            future: Future[Any] = Future()
            try:
                future.set_result(getattr(self, method)(*args))
            except BaseException as e:  # handed to whoever awaits it
                future.set_exception(e)
            return future
        if self._writer is None:
            with self._lock:
                if self._writer is None:
                    self._writer = _Writer(self.path)
        return self._writer.submit(method, args)

    def flush(self) -> None:
        """Wait until every submitted write is in the file (raises the first write that failed)."""
        if self._writer is not None:
            self._writer.flush()

    # -- runs -----------------------------------------------------------------------------------
    def create_run(self, config: RunConfig, seeds: list[Seed], name: str | None = None,
                   seed_set: str | None = None, run_id: str | None = None) -> str:
        run_id = run_id or time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
        now = time.time()
        with self.transaction() as c:
            version = self._matching_seed_set_version(c, seed_set, seeds) if seed_set else None
            c.execute(
                "INSERT INTO runs (id, name, status, config_json, seeds_json, seed_set, error, created_at, updated_at, "
                "seed_set_version) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (run_id, name or config.name or run_id, "created", json.dumps(config.to_dict()),
                 json.dumps([s.to_dict() for s in seeds], ensure_ascii=False), seed_set, None, now, now, version),
            )
        return run_id

    def set_run_status(self, run_id: str, status: str, error: str | None = None) -> None:
        with self.transaction() as c:
            c.execute("UPDATE runs SET status=?, error=?, updated_at=? WHERE id=?",
                      (status, error, time.time(), run_id))

    def get_run(self, run_id: str) -> dict[str, Any] | None:
        rows = self.query("SELECT * FROM runs WHERE id=?", (run_id,))
        return self._run_dict(rows[0]) if rows else None

    def latest_run_id(self) -> str | None:
        rows = self.query("SELECT id FROM runs ORDER BY created_at DESC, rowid DESC LIMIT 1")
        return rows[0]["id"] if rows else None

    def list_runs(self) -> list[dict[str, Any]]:
        return [self._run_dict(r) for r in self.query("SELECT * FROM runs ORDER BY created_at DESC, rowid DESC")]

    def delete_run(self, run_id: str) -> None:
        with self.transaction() as c:
            c.execute("DELETE FROM scores WHERE node_id IN (SELECT id FROM nodes WHERE run_id=?)", (run_id,))
            c.execute("DELETE FROM selection_items WHERE node_id IN (SELECT id FROM nodes WHERE run_id=?)", (run_id,))
            c.execute("DELETE FROM nodes WHERE run_id=?", (run_id,))
            c.execute("DELETE FROM calls WHERE run_id=?", (run_id,))
            c.execute("DELETE FROM answer_checks WHERE run_id=?", (run_id,))
            c.execute("DELETE FROM reviews WHERE run_id=?", (run_id,))
            c.execute("DELETE FROM op_decisions WHERE run_id=?", (run_id,))
            c.execute("DELETE FROM batch_lines WHERE batch_id IN (SELECT id FROM batches WHERE run_id=?)", (run_id,))
            c.execute("DELETE FROM batches WHERE run_id=?", (run_id,))
            c.execute("DELETE FROM runs WHERE id=?", (run_id,))
            for prefix in RUN_META_PREFIXES:  # the entry names the run alone or in a comma-separated list of runs
                c.execute("DELETE FROM meta WHERE substr(key, 1, length(?)) = ? AND "
                          "instr(',' || substr(key, length(?) + 1) || ',', ',' || ? || ',') > 0",
                          (prefix, prefix, prefix, run_id))

    @staticmethod
    def _run_dict(row: sqlite3.Row) -> dict[str, Any]:
        d = dict(row)
        d["config"] = RunConfig.from_dict(json.loads(d.pop("config_json")))
        d["seeds"] = [Seed(**s) for s in json.loads(d.pop("seeds_json"))]
        return d

    # -- run leases (evolab/engine/lease.py) ---------------------------------------------------------
    def take_lease(self, run_id: str, *, host: str, pid: int, token: str, expiry_s: float,
                   take_over: bool = False) -> tuple[bool, dict[str, Any] | None]:
        """Take the run's lease in one BEGIN IMMEDIATE transaction (of two takers in any processes, one wins): when
        it is free, already ours (`token`), expired (no heartbeat for longer than its holder's `expiry_s`) or
        `take_over`. Returns (taken, the row before): the live holder's row when not taken."""
        now = time.time()
        with self.transaction() as c:
            row = c.execute("SELECT * FROM run_leases WHERE run_id=?", (run_id,)).fetchone()
            before = dict(row) if row is not None else None
            if before is not None and before["token"] != token and not take_over \
                    and now - before["heartbeat"] <= before["expiry_s"]:
                return False, before
            since = before["since"] if before is not None and before["token"] == token else now
            c.execute("INSERT OR REPLACE INTO run_leases (run_id, host, pid, token, since, heartbeat, expiry_s) "
                      "VALUES (?,?,?,?,?,?,?)", (run_id, host, pid, token, since, now, expiry_s))
        return True, before

    def renew_lease(self, run_id: str, token: str) -> bool:
        """The holder's heartbeat; False when the lease is no longer ours (taken over after it expired)."""
        with self.transaction() as c:
            return c.execute("UPDATE run_leases SET heartbeat=? WHERE run_id=? AND token=?",
                             (time.time(), run_id, token)).rowcount == 1

    def release_lease(self, run_id: str, token: str) -> None:
        with self.transaction() as c:
            c.execute("DELETE FROM run_leases WHERE run_id=? AND token=?", (run_id, token))

    def lease(self, run_id: str) -> dict[str, Any] | None:
        """The run's lease row (host, pid, token, since, heartbeat, expiry_s), live or expired; None when free."""
        rows = self.query("SELECT * FROM run_leases WHERE run_id=?", (run_id,))
        return dict(rows[0]) if rows else None

    # -- nodes ----------------------------------------------------------------------------------
    def record_step(self, node: Node | None = None, scores: Iterable[Score] = (),
                    calls: Iterable[LLMCall] = ()) -> None:
        """Write one completed step (a node with its scores and calls) in one transaction."""
        with self.transaction() as c:
            if node is not None:
                self._upsert_node(c, node)
            for s in scores:
                self._put_score(c, s)
            for call in calls:
                self._put_call(c, call)

    def save_node(self, node: Node) -> None:
        self.record_step(node)

    def save_nodes(self, nodes: Iterable[Node]) -> None:
        """Several nodes in one transaction (a run's seeds)."""
        with self.transaction() as c:
            for n in nodes:
                self._upsert_node(c, n)

    def update_run_config(self, run_id: str, config: RunConfig) -> None:
        with self.transaction() as c:
            c.execute("UPDATE runs SET config_json=?, updated_at=? WHERE id=?",
                      (json.dumps(config.to_dict()), time.time(), run_id))

    def kept_per_round(self, run_id: str) -> dict[int, int]:
        """Round -> nodes in the pool (seeds and kept children)."""
        return {int(r[0]): int(r[1]) for r in self.query(
            "SELECT round, COUNT(*) FROM nodes WHERE run_id=? AND status IN ('seed','kept') GROUP BY round", (run_id,))}

    def run_version(self, run_id: str) -> tuple[int, float, int]:
        """(nodes, last node update, calls): changes whenever a run moves on."""
        row = self.query("SELECT COUNT(*), COALESCE(MAX(updated_at), 0) FROM nodes WHERE run_id=?", (run_id,))[0]
        calls = self.query("SELECT COUNT(*) FROM calls WHERE run_id=?", (run_id,))[0][0]
        return int(row[0]), float(row[1]), int(calls)

    @staticmethod
    def _upsert_node(c: sqlite3.Connection, node: Node) -> None:
        values = [getattr(node, f) for f in NODE_FIELDS]
        c.execute(
            f"INSERT INTO nodes ({','.join(NODE_FIELDS)}, updated_at) VALUES ({','.join('?' * len(NODE_FIELDS))}, ?) "
            f"ON CONFLICT(id) DO UPDATE SET "
            + ",".join(f"{f}=excluded.{f}" for f in NODE_FIELDS if f != "id")
            + ", updated_at=excluded.updated_at",
            values + [time.time()],
        )

    def get_node(self, node_id: str) -> Node | None:
        rows = self.query(f"SELECT {','.join(NODE_FIELDS)} FROM nodes WHERE id=?", (node_id,))
        return Node(**dict(rows[0])) if rows else None

    def nodes(self, run_id: str, status: str | None = None) -> list[Node]:
        sql = f"SELECT {','.join(NODE_FIELDS)} FROM nodes WHERE run_id=?"
        params: list[Any] = [run_id]
        if status:
            sql += " AND status=?"
            params.append(status)
        sql += " ORDER BY round, created_at, id"
        return [Node(**dict(r)) for r in self.query(sql, params)]

    def iter_nodes_with_scores(self, run_id: str, batch: int = 2000
                               ) -> Iterator[tuple[list[Node], dict[str, dict[str, float | None]]]]:
        """A run's nodes in `nodes()` order, `batch` at a time, each batch with its nodes' scores
        ({node_id: {metric: value}}): exports of any size in bounded memory. Reads on a connection of
        its own (one consistent snapshot in WAL mode) so other readers are not held up meanwhile."""
        self.flush()
        conn = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
        try:
            conn.row_factory = sqlite3.Row
            cursor = conn.execute(f"SELECT {','.join(NODE_FIELDS)} FROM nodes WHERE run_id=? "
                                  "ORDER BY round, created_at, id", (run_id,))
            while rows := cursor.fetchmany(batch):
                nodes = [Node(**dict(r)) for r in rows]
                scores: dict[str, dict[str, float | None]] = {}
                marks = ",".join("?" * len(nodes))
                for node_id, metric, value in conn.execute(
                        f"SELECT node_id, metric, value FROM scores WHERE node_id IN ({marks})", [n.id for n in nodes]):
                    scores.setdefault(node_id, {})[metric] = value
                yield nodes, scores
        finally:
            conn.close()

    def children(self, node_id: str) -> list[Node]:
        rows = self.query(f"SELECT {','.join(NODE_FIELDS)} FROM nodes WHERE parent_id=? ORDER BY created_at",
                          (node_id,))
        return [Node(**dict(r)) for r in rows]

    # -- scores ---------------------------------------------------------------------------------
    @staticmethod
    def _put_score(c: sqlite3.Connection, s: Score) -> None:
        c.execute("INSERT OR REPLACE INTO scores VALUES (?,?,?,?,?,?)",
                  (s.node_id, s.metric, s.value, s.judge, s.detail, time.time()))

    def add_scores(self, scores: Iterable[Score]) -> None:
        self.record_step(scores=scores)

    def scores(self, run_id: str | None = None, node_id: str | None = None) -> list[Score]:
        if node_id is not None:
            rows = self.query("SELECT node_id, metric, value, judge, detail FROM scores WHERE node_id=?", (node_id,))
        else:
            rows = self.query(
                "SELECT s.node_id, s.metric, s.value, s.judge, s.detail FROM scores s "
                "JOIN nodes n ON n.id = s.node_id WHERE n.run_id=?", (run_id,))
        return [Score(**dict(r)) for r in rows]

    def score_means(self, run_id: str, metrics: list[str]) -> dict[str, tuple[float | None, int]]:
        """Per metric: the mean of a run's scores that have a value, and how many there are."""
        if not metrics:
            return {}
        marks = ",".join("?" * len(metrics))
        rows = self.query(f"SELECT s.metric, AVG(s.value) AS mean, COUNT(s.value) AS n FROM scores s "
                          f"JOIN nodes n ON n.id = s.node_id WHERE n.run_id=? AND s.metric IN ({marks}) "
                          f"GROUP BY s.metric", (run_id, *metrics))
        found = {r["metric"]: (r["mean"], r["n"]) for r in rows}
        return {m: found.get(m, (None, 0)) for m in metrics}

    # -- calls ----------------------------------------------------------------------------------
    @staticmethod
    def _put_call(c: sqlite3.Connection, call: LLMCall) -> None:
        c.execute(
            "INSERT INTO calls (run_id, node_id, purpose, model, prompt_tokens, completion_tokens, latency_s, "
            "cost_usd, price_known, cached, error, request_hash, created_at, reasoning_tokens) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (call.run_id, call.node_id, call.purpose, call.model, call.prompt_tokens, call.completion_tokens,
             call.latency_s, call.cost_usd, int(call.price_known), int(call.cached), call.error,
             call.request_hash, call.created_at, call.reasoning_tokens),
        )

    def add_call(self, call: LLMCall) -> None:
        self.record_step(calls=[call])

    def calls(self, run_id: str | None = None, *, node_id: str | None = None) -> list[LLMCall]:
        """Calls in the order made: all, a run's, or one node's (`node_id`: a node view reads its few calls, not
        the run's tens of thousands)."""
        self.flush()  # this process's calls still on the writer thread are read too
        cols = ("purpose, model, prompt_tokens, completion_tokens, latency_s, cost_usd, price_known, cached, "
                "error, run_id, node_id, request_hash, created_at, reasoning_tokens")
        if node_id is not None and run_id is not None:  # the run's index, then its node's rows
            rows = self.query(f"SELECT {cols} FROM calls WHERE run_id=? AND node_id=? ORDER BY id", (run_id, node_id))
        elif node_id is not None:
            rows = self.query(f"SELECT {cols} FROM calls WHERE node_id=? ORDER BY id", (node_id,))
        elif run_id is None:
            rows = self.query(f"SELECT {cols} FROM calls ORDER BY id")
        else:
            rows = self.query(f"SELECT {cols} FROM calls WHERE run_id=? ORDER BY id", (run_id,))
        out = []
        for r in rows:
            d = dict(r)
            d["price_known"], d["cached"] = bool(d["price_known"]), bool(d["cached"])
            out.append(LLMCall(**d))
        return out

    def run_cost(self, run_id: str) -> float:
        self.flush()  # this process's calls still on the writer thread are read too
        return float(self.query("SELECT COALESCE(SUM(cost_usd),0) FROM calls WHERE run_id=?", (run_id,))[0][0])

    def run_tokens(self, run_id: str) -> int:
        """Tokens a run sent and received over the network (cache hits cost nothing): what --budget-tokens counts."""
        self.flush()  # this process's calls still on the writer thread are read too
        return int(self.query("SELECT COALESCE(SUM(prompt_tokens + completion_tokens),0) FROM calls "
                              "WHERE run_id=? AND cached=0", (run_id,))[0][0])

    def run_summary(self, run_id: str) -> dict[str, Any]:
        """Counts by status and rule, calls, tokens and cost: what `runs` and the progress view show."""
        self.flush()  # this process's calls still on the writer thread are read too
        by_status = {r[0]: r[1] for r in self.query(
            "SELECT status, COUNT(*) FROM nodes WHERE run_id=? GROUP BY status", (run_id,))}
        by_rule = {r[0]: r[1] for r in self.query(
            "SELECT rule, COUNT(*) FROM nodes WHERE run_id=? AND rule IS NOT NULL GROUP BY rule", (run_id,))}
        c = self.query(
            "SELECT COUNT(*), COALESCE(SUM(cached),0), COALESCE(SUM(prompt_tokens),0), "
            "COALESCE(SUM(completion_tokens),0), COALESCE(SUM(cost_usd),0), COALESCE(SUM(error IS NOT NULL),0), "
            "COALESCE(MIN(price_known),1), MIN(created_at), MAX(created_at), COALESCE(SUM(reasoning_tokens),0) "
            "FROM calls WHERE run_id=?",
            (run_id,))[0]
        max_round = self.query("SELECT COALESCE(MAX(round),0) FROM nodes WHERE run_id=?", (run_id,))[0][0]
        return {
            "nodes": sum(by_status.values()), "by_status": by_status, "by_rule": by_rule,
            "calls": c[0], "cached_calls": c[1], "prompt_tokens": c[2], "completion_tokens": c[3],
            "cost_usd": c[4], "failed_calls": c[5], "price_known": bool(c[6]),
            "first_call_at": c[7], "last_call_at": c[8], "max_round": max_round, "reasoning_tokens": c[9],
        }

    # -- request cache --------------------------------------------------------------------------
    def cache_get(self, key: str) -> dict[str, Any] | None:
        pending = self._pending_cache.get(key)  # written by this process, still on the writer thread
        if pending is not None:
            return pending
        rows = self.query("SELECT response_json FROM cache WHERE key=?", (key,))
        return json.loads(rows[0][0]) if rows else None

    def cache_put_later(self, key: str, model: str, response: dict[str, Any]) -> None:
        """`cache_put` on the writer thread; `cache_get` sees it at once."""
        self._pending_cache[key] = response
        self.submit("cache_put", key, model, response).add_done_callback(
            lambda _: self._pending_cache.pop(key, None))

    def cache_put(self, key: str, model: str, response: dict[str, Any]) -> None:
        with self.transaction() as c:
            c.execute("INSERT OR REPLACE INTO cache VALUES (?,?,?,?)",
                      (key, model, json.dumps(response, ensure_ascii=False), time.time()))

    # -- embeddings -----------------------------------------------------------------------------
    def get_embeddings(self, model: str, hashes: list[str]) -> dict[str, bytes]:
        out: dict[str, bytes] = {}
        for i in range(0, len(hashes), 500):
            chunk = hashes[i:i + 500]
            rows = self.query(
                f"SELECT text_hash, vector FROM embeddings WHERE model=? AND text_hash IN ({','.join('?' * len(chunk))})",
                [model, *chunk])
            out.update({r[0]: r[1] for r in rows})
        return out

    def put_embeddings(self, model: str, items: Iterable[tuple[str, int, bytes]]) -> None:
        with self.transaction() as c:
            c.executemany("INSERT OR REPLACE INTO embeddings VALUES (?,?,?,?)",
                          [(model, h, dim, blob) for h, dim, blob in items])

    # -- seed sets ------------------------------------------------------------------------------
    def save_seed_set(self, name: str, seeds: list[Seed], note: str | None = None) -> int:
        """Save the set under `name` and return its version: a new one, or the latest when its content is the
        same (saving unchanged seeds adds no version)."""
        if not name.strip():
            raise ValueError("A seed set needs a name.")
        now = time.time()
        seeds_json = json.dumps([s.to_dict() for s in seeds], ensure_ascii=False)
        with self.transaction() as c:
            c.execute(
                "INSERT INTO seed_sets VALUES (?,?,?,?) ON CONFLICT(name) DO UPDATE SET "
                "seeds_json=excluded.seeds_json, updated_at=excluded.updated_at",
                (name.strip(), seeds_json, now, now))
            return self._add_seed_set_version(c, name.strip(), seeds, seeds_json, note, now)

    def seed_sets(self) -> list[str]:
        return [r[0] for r in self.query("SELECT name FROM seed_sets ORDER BY updated_at DESC")]

    def load_seed_set(self, name: str) -> list[Seed]:
        rows = self.query("SELECT seeds_json FROM seed_sets WHERE name=?", (name,))
        if not rows:
            raise KeyError(f"No seed set named {name!r} in {self.path}.")
        return [Seed(**s) for s in json.loads(rows[0][0])]

    # -- seed set versions (issue 10: every changed save is a version; runs record the one they used) ------
    @staticmethod
    def _version_hash(row: sqlite3.Row) -> str:
        # Versions carried over from before versioning have no stored hash.
        return row["content_hash"] or seed_set_hash([Seed(**s) for s in json.loads(row["seeds_json"])])

    def _add_seed_set_version(self, c: sqlite3.Connection, name: str, seeds: list[Seed], seeds_json: str,
                              note: str | None, now: float) -> int:
        digest = seed_set_hash(seeds)
        latest = c.execute("SELECT version, seeds_json, content_hash FROM seed_set_versions WHERE name=? "
                           "ORDER BY version DESC LIMIT 1", (name,)).fetchone()
        if latest is not None and self._version_hash(latest) == digest:
            return int(latest["version"])
        version = int(latest["version"]) + 1 if latest is not None else 1
        c.execute("INSERT INTO seed_set_versions (name, version, seeds_json, content_hash, note, created_at) "
                  "VALUES (?,?,?,?,?,?)", (name, version, seeds_json, digest, (note or "").strip() or None, now))
        return version

    def _matching_seed_set_version(self, c: sqlite3.Connection, name: str, seeds: list[Seed]) -> int | None:
        """The newest version of `name` with exactly these seeds (None: they were edited after loading)."""
        digest = seed_set_hash(seeds)
        for row in c.execute("SELECT version, seeds_json, content_hash FROM seed_set_versions WHERE name=? "
                             "ORDER BY version DESC", (name,)).fetchall():
            if self._version_hash(row) == digest:
                return int(row["version"])
        return None

    def seed_set_versions(self, name: str) -> list[dict[str, Any]]:
        """The versions of a seed set, newest first: version, created_at, seeds (count), content_hash, note,
        runs (ids of the runs that used it)."""
        runs: dict[int, list[str]] = {}
        for r in self.query("SELECT id, seed_set_version FROM runs WHERE seed_set=? AND seed_set_version IS NOT NULL "
                            "ORDER BY created_at", (name,)):
            runs.setdefault(int(r["seed_set_version"]), []).append(r["id"])
        out = []
        for r in self.query("SELECT * FROM seed_set_versions WHERE name=? ORDER BY version DESC", (name,)):
            out.append({"version": int(r["version"]), "created_at": r["created_at"],
                        "seeds": len(json.loads(r["seeds_json"])), "content_hash": self._version_hash(r),
                        "note": r["note"], "runs": runs.get(int(r["version"]), [])})
        return out

    def load_seed_set_version(self, name: str, version: int) -> list[Seed]:
        rows = self.query("SELECT seeds_json FROM seed_set_versions WHERE name=? AND version=?", (name, int(version)))
        if not rows:
            raise KeyError(f"No version {version} of seed set {name!r} in {self.path}.")
        return [Seed(**s) for s in json.loads(rows[0][0])]

    # -- grow jobs (issue 10, evolab/seeds/craft.py) ---------------------------------------------------
    def start_grow_job(self, job_id: str, config: dict[str, Any]) -> None:
        """Create the job, or mark an existing one running again (a resume); its candidates stay."""
        now = time.time()
        with self.transaction() as c:
            c.execute("INSERT INTO grow_jobs VALUES (?,?,?,?,?,?) ON CONFLICT(id) DO UPDATE SET status='running', "
                      "error=NULL, config_json=excluded.config_json, updated_at=excluded.updated_at",
                      (job_id, json.dumps(config, ensure_ascii=False), "running", None, now, now))

    def set_grow_status(self, job_id: str, status: str, error: str | None = None) -> None:
        with self.transaction() as c:
            c.execute("UPDATE grow_jobs SET status=?, error=?, updated_at=? WHERE id=?",
                      (status, error, time.time(), job_id))

    def grow_job(self, job_id: str) -> dict[str, Any] | None:
        rows = self.query("SELECT * FROM grow_jobs WHERE id=?", (job_id,))
        if not rows:
            return None
        d = dict(rows[0])
        d["config"] = json.loads(d.pop("config_json"))
        return d

    def record_grow_call(self, job_id: str, call_index: int, candidates: list[dict[str, Any]]) -> None:
        """Every candidate one call gave (at least one row per call, so a resume knows the call is done)."""
        now = time.time()
        with self.transaction() as c:
            c.executemany(
                "INSERT OR REPLACE INTO grow_candidates VALUES (?,?,?,?,?,?,?,?,?,?)",
                [(job_id, call_index, k["position"], k["instruction"], k.get("input") or "", k["status"],
                  k.get("reason"), k.get("detail"),
                  json.dumps(k["seed"], ensure_ascii=False) if k.get("seed") else None, now) for k in candidates])
            c.execute("UPDATE grow_jobs SET updated_at=? WHERE id=?", (now, job_id))

    def grow_candidates(self, job_id: str, status: str | None = None) -> list[dict[str, Any]]:
        sql, params = "SELECT * FROM grow_candidates WHERE job_id=?", [job_id]
        if status:
            sql, params = sql + " AND status=?", params + [status]
        out = []
        for r in self.query(sql + " ORDER BY call_index, position", params):
            d = dict(r)
            raw = d.pop("seed_json")
            d["seed"] = json.loads(raw) if raw else None
            out.append(d)
        return out

    def grow_progress(self, job_id: str) -> dict[str, Any]:
        """Calls done, candidates kept and rejected (by reason): what the CLI prints and the app polls."""
        row = self.query("SELECT COUNT(DISTINCT call_index), COALESCE(SUM(status='kept'),0), "
                         "COALESCE(SUM(status='rejected' AND position>=0),0), COALESCE(MAX(call_index),-1) "
                         "FROM grow_candidates WHERE job_id=?", (job_id,))[0]
        by_reason = {r[0]: r[1] for r in self.query(
            "SELECT reason, COUNT(*) FROM grow_candidates WHERE job_id=? AND status='rejected' GROUP BY reason "
            "ORDER BY COUNT(*) DESC", (job_id,))}
        return {"calls": int(row[0]), "kept": int(row[1]), "rejected": int(row[2]), "last_call": int(row[3]),
                "by_reason": by_reason}

    # -- judgments ------------------------------------------------------------------------------
    def add_judgment(self, row: dict[str, Any]) -> None:
        cols = ["comparison", "item_key", "label_a", "label_b", "node_a", "node_b", "first_verdict",
                "second_verdict", "outcome", "judge", "detail"]
        with self.transaction() as c:
            c.execute(
                f"INSERT OR REPLACE INTO judgments ({','.join(cols)}, created_at) VALUES ({','.join('?' * len(cols))}, ?)",
                [row.get(k) for k in cols] + [time.time()])

    def judgments(self, comparison: str | None = None) -> list[dict[str, Any]]:
        if comparison is None:
            rows = self.query("SELECT * FROM judgments ORDER BY id")
        else:
            rows = self.query("SELECT * FROM judgments WHERE comparison=? ORDER BY id", (comparison,))
        return [dict(r) for r in rows]

    # -- adaptive operation decisions (issue 11) ------------------------------------------------------
    def add_op_decision(self, row: dict[str, Any]) -> None:
        """One adaptive choice of an operation; the first stored decision for a node stands (a resumed run
        reads it back instead of sampling again)."""
        with self.transaction() as c:
            c.execute("INSERT OR IGNORE INTO op_decisions (node_id, run_id, seq, language, operation, posterior_json, "
                      "draws_json, reward, reward_detail, created_at) VALUES (?,?,?,?,?,?,?,?,?,?)",
                      (row["node_id"], row["run_id"], row["seq"], row["language"], row["operation"],
                       json.dumps(row["posterior"]), json.dumps(row["draws"]), row.get("reward"),
                       row.get("reward_detail"), row.get("created_at", time.time())))

    def set_op_reward(self, node_id: str, reward: float | None, detail: str) -> None:
        with self.transaction() as c:
            c.execute("UPDATE op_decisions SET reward=?, reward_detail=? WHERE node_id=?", (reward, detail, node_id))

    def op_decisions(self, run_id: str) -> list[dict[str, Any]]:
        """A run's decisions in the order they were made, posterior and draws decoded."""
        self.flush()  # this process's decisions still on the writer thread are read too
        rows = self.query("SELECT * FROM op_decisions WHERE run_id=? ORDER BY seq", (run_id,))
        out = []
        for r in rows:
            d = dict(r)
            d["posterior"], d["draws"] = json.loads(d.pop("posterior_json")), json.loads(d.pop("draws_json"))
            out.append(d)
        return out

    # -- reviews by a person (issue 12) -------------------------------------------------------------
    def add_review(self, row: dict[str, Any]) -> int:
        """Append one review (verdict keep / discard / skip); earlier ones stay as history. Returns its id."""
        with self.transaction() as c:
            cur = c.execute(
                "INSERT INTO reviews (node_id, run_id, reviewer, verdict, note, reasons_json, applied, created_at) "
                "VALUES (?,?,?,?,?,?,?,?)",
                (row["node_id"], row["run_id"], row.get("reviewer") or None, row["verdict"], row.get("note") or None,
                 json.dumps(list(row.get("reasons") or []), ensure_ascii=False), int(bool(row.get("applied"))),
                 row.get("created_at", time.time())))
            return int(cur.lastrowid)

    def reviews(self, run_ids: Iterable[str], latest_only: bool = True) -> list[dict[str, Any]]:
        """Reviews of these runs' nodes, oldest first; `latest_only`: the last review of each node."""
        ids = list(run_ids)
        if not ids:
            return []
        marks = ",".join("?" * len(ids))
        sql = f"SELECT * FROM reviews WHERE run_id IN ({marks})"
        if latest_only:
            sql += f" AND id IN (SELECT MAX(id) FROM reviews WHERE run_id IN ({marks}) GROUP BY node_id)"
        rows = self.query(sql + " ORDER BY id", ids + (ids if latest_only else []))
        out = []
        for r in rows:
            d = dict(r)
            d["reasons"] = json.loads(d.pop("reasons_json"))
            d["applied"] = bool(d["applied"])
            out.append(d)
        return out

    def review_rows(self, run_ids: Iterable[str], *, reviewed_only: bool = False) -> tuple[list[tuple], list[tuple]]:
        """What the review queue reads, without the texts: the runs' evolved nodes as (id, run_id, round,
        operation, status, rule, language) and their verdict and score rows as (node_id, metric, value, judge,
        unreadable), the heuristic complexity measures (cx_*) left out; `unreadable`: no value, and a rule's
        verdict or a reply stored as "unreadable ...". `reviewed_only`: only the nodes a person reviewed (what the
        agreement reads: a few hundred rows, not the whole run)."""
        ids = list(run_ids)
        if not ids:
            return [], []
        marks = ",".join("?" * len(ids))
        # " AND <node id column> IN (the reviewed nodes)", for each query's own name of the node id
        reviewed = (f" AND {{}} IN (SELECT node_id FROM reviews WHERE run_id IN ({marks}))" if reviewed_only
                    else "")
        params = ids * 2 if reviewed_only else ids
        nodes = self.query_tuples("SELECT id, run_id, round, operation, status, rule, language FROM nodes "
                                  f"WHERE run_id IN ({marks}) AND round > 0" + reviewed.format("id"), params)
        scores = self.query_tuples(
            "SELECT s.node_id, s.metric, s.value, s.judge, (s.value IS NULL AND (s.metric LIKE 'rule:%' OR "
            "lower(COALESCE(s.detail, '')) LIKE 'unreadable%')) FROM scores s JOIN nodes n ON n.id = s.node_id "
            f"WHERE n.run_id IN ({marks}) AND n.round > 0 AND s.metric NOT LIKE 'cx!_%' ESCAPE '!'"
            + reviewed.format("n.id"), params)
        return nodes, scores

    # -- selections (issue 27, evolab/analysis/select.py) ---------------------------------------------------
    def add_selection(self, row: dict[str, Any], items: Iterable[tuple]) -> int:
        """One selection and its items (node_id, rank, score, chosen, reason, other_id, similarity) in one
        transaction. Returns the selection's id."""
        with self.transaction() as c:
            cur = c.execute(
                "INSERT INTO selections (run_ids_json, params_json, embedder, threshold, n_requested, n_chosen, "
                "out_path, out_format, created_at) VALUES (?,?,?,?,?,?,?,?,?)",
                (json.dumps(list(row["run_ids"])), json.dumps(row["params"], ensure_ascii=False, sort_keys=True),
                 row.get("embedder"), row.get("threshold"), row["n_requested"], row["n_chosen"], row.get("out_path"),
                 row.get("out_format"), row.get("created_at", time.time())))
            sid = int(cur.lastrowid)
            c.executemany("INSERT INTO selection_items (selection_id, node_id, rank, score, chosen, reason, other_id, "
                          "similarity) VALUES (?,?,?,?,?,?,?,?)", ((sid, *item) for item in items))
            return sid

    def selections(self, run_id: str | None = None) -> list[dict[str, Any]]:
        """Every selection, newest first (those that drew on `run_id` when given), parameters decoded."""
        out = []
        for r in self.query("SELECT * FROM selections ORDER BY id DESC"):
            d = dict(r)
            d["run_ids"], d["params"] = json.loads(d.pop("run_ids_json")), json.loads(d.pop("params_json"))
            if run_id is None or run_id in d["run_ids"]:
                out.append(d)
        return out

    def selection_items(self, selection_id: int) -> list[dict[str, Any]]:
        """A selection's candidates in the order they were considered (rank), chosen or not."""
        rows = self.query("SELECT node_id, rank, score, chosen, reason, other_id, similarity FROM selection_items "
                          "WHERE selection_id=? ORDER BY rank IS NULL, rank, node_id", (selection_id,))
        return [{**dict(r), "chosen": bool(r["chosen"])} for r in rows]

    # -- checked answers (issue 12, evolab/engine/checking.py) ----------------------------------------------
    def save_answer_check(self, row: dict[str, Any]) -> None:
        """One node's check; a later check of the same node replaces it."""
        with self.transaction() as c:
            c.execute(
                "INSERT OR REPLACE INTO answer_checks (node_id, run_id, status, reason, answer_value, agreeing, k, "
                "temperature, tolerance, model, readings_json, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (row["node_id"], row["run_id"], row["status"], row.get("reason"), row.get("answer_value"),
                 row.get("agreeing"), row["k"], row.get("temperature"), row.get("tolerance"), row.get("model"),
                 json.dumps(row.get("readings") or [], ensure_ascii=False), row.get("created_at", time.time())))

    def answer_check_status(self, node_id: str) -> str | None:
        """The node's check status, None when it was never checked (no flush: a run asks it on its event loop)."""
        rows = self.query("SELECT status FROM answer_checks WHERE node_id=?", (node_id,))
        return rows[0][0] if rows else None

    def answer_checks(self, run_ids: Iterable[str]) -> list[dict[str, Any]]:
        """The checks of these runs' nodes, each with the node's round and status, readings decoded."""
        ids = list(run_ids)
        if not ids:
            return []
        self.flush()  # this process's checks still on the writer thread are read too
        rows = self.query(
            "SELECT a.*, n.round AS round, n.status AS node_status FROM answer_checks a JOIN nodes n "
            f"ON n.id = a.node_id WHERE a.run_id IN ({','.join('?' * len(ids))}) ORDER BY n.round, a.created_at",
            ids)
        out = []
        for r in rows:
            d = dict(r)
            d["readings"] = json.loads(d.pop("readings_json"))
            out.append(d)
        return out

    # -- template versions and tuning sessions (issue 11, evolab/engine/templates.py, evolab/audit/tuning.py) --------
    def add_template_version(self, operation: str, language: str, version: str, name: str, text: str,
                             parent_version: str | None, note: str | None = None) -> None:
        """Save a template version; the same text saved again keeps its first row (and name)."""
        with self.transaction() as c:
            if c.execute("SELECT 1 FROM template_versions WHERE operation=? AND language=? AND hash=?",
                         (operation, language, version)).fetchone():
                return
            if c.execute("SELECT 1 FROM template_versions WHERE operation=? AND language=? AND name=?",
                         (operation, language, name)).fetchone():
                raise ValueError(f"A {language}/{operation} template version is already named {name!r}; "
                                 "choose another name.")
            c.execute("INSERT INTO template_versions (operation, language, hash, name, text, parent_version, note, "
                      "created_at) VALUES (?,?,?,?,?,?,?,?)",
                      (operation, language, version, name, text, parent_version, note, time.time()))

    def template_versions(self, operation: str | None = None, language: str | None = None) -> list[dict[str, Any]]:
        """Stored template versions, oldest first, optionally of one operation and language."""
        sql, params = "SELECT * FROM template_versions WHERE 1=1", []
        if operation:
            sql, params = sql + " AND operation=?", params + [operation]
        if language:
            sql, params = sql + " AND language=?", params + [language]
        return [dict(r) for r in self.query(sql + " ORDER BY created_at, rowid", params)]

    def create_tuning_session(self, row: dict[str, Any]) -> None:
        now = time.time()
        with self.transaction() as c:
            c.execute("INSERT INTO tuning_sessions (id, run_id, operation, language, parent_version, status, detail, "
                      "settings_json, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?)",
                      (row["id"], row["run_id"], row["operation"], row["language"], row["parent_version"],
                       row.get("status", "started"), row.get("detail"), json.dumps(row.get("settings", {})), now, now))

    def update_tuning_session(self, session_id: str, **fields: Any) -> None:
        """Set status, detail, failures (a list), settings (a dict) or optimizer_reply of a session."""
        allowed = {"status", "detail", "failures", "settings", "optimizer_reply"}
        if not fields or set(fields) - allowed:
            raise ValueError(f"update_tuning_session takes {sorted(allowed)}")
        as_json = {"failures", "settings"}
        cols = {(f"{k}_json" if k in as_json else k): (json.dumps(v, ensure_ascii=False) if k in as_json else v)
                for k, v in fields.items()}
        with self.transaction() as c:
            c.execute(f"UPDATE tuning_sessions SET {', '.join(f'{k}=?' for k in cols)}, updated_at=? WHERE id=?",
                      list(cols.values()) + [time.time(), session_id])

    @staticmethod
    def _session_dict(row: sqlite3.Row) -> dict[str, Any]:
        d = dict(row)
        d["settings"] = json.loads(d.pop("settings_json"))
        d["failures"] = json.loads(d.pop("failures_json") or "[]")
        return d

    def tuning_session(self, session_id: str) -> dict[str, Any] | None:
        rows = self.query("SELECT * FROM tuning_sessions WHERE id=?", (session_id,))
        return self._session_dict(rows[0]) if rows else None

    def tuning_sessions(self, run_id: str | None = None) -> list[dict[str, Any]]:
        """Tuning sessions, newest first (of one source run when given)."""
        sql, params = "SELECT * FROM tuning_sessions", []
        if run_id:
            sql, params = sql + " WHERE run_id=?", [run_id]
        return [self._session_dict(r) for r in self.query(sql + " ORDER BY created_at DESC, rowid DESC", params)]

    def add_tuning_candidate(self, row: dict[str, Any]) -> None:
        """A candidate (idx 0 is the current template, the baseline); a candidate stored already stays."""
        with self.transaction() as c:
            c.execute("INSERT OR IGNORE INTO tuning_candidates (session_id, idx, hash, text, rationale, status, reason, "
                      "created_at) VALUES (?,?,?,?,?,?,?,?)",
                      (row["session_id"], row["idx"], row["hash"], row["text"], row.get("rationale"), row["status"],
                       row.get("reason"), time.time()))

    def update_tuning_candidate(self, session_id: str, idx: int, **fields: Any) -> None:
        """Set status, reason, dev_run_id, measures (a dict, stored as JSON) or adopted_as of a candidate."""
        allowed = {"status", "reason", "dev_run_id", "measures", "adopted_as"}
        if not fields or set(fields) - allowed:
            raise ValueError(f"update_tuning_candidate takes {sorted(allowed)}")
        cols = {("measures_json" if k == "measures" else k): (json.dumps(v) if k == "measures" else v)
                for k, v in fields.items()}
        with self.transaction() as c:
            c.execute(f"UPDATE tuning_candidates SET {', '.join(f'{k}=?' for k in cols)} WHERE session_id=? AND idx=?",
                      list(cols.values()) + [session_id, idx])

    def tuning_candidates(self, session_id: str) -> list[dict[str, Any]]:
        rows = self.query("SELECT * FROM tuning_candidates WHERE session_id=? ORDER BY idx", (session_id,))
        out = []
        for r in rows:
            d = dict(r)
            d["measures"] = json.loads(d.pop("measures_json") or "null")
            out.append(d)
        return out

    def candidate_template_text(self, operation: str, language: str, version: str) -> str | None:
        """The text of a tuning candidate with this hash (its dev run uses it before anyone adopts it)."""
        rows = self.query("SELECT c.text FROM tuning_candidates c JOIN tuning_sessions s ON s.id = c.session_id "
                          "WHERE s.operation=? AND s.language=? AND c.hash=? LIMIT 1", (operation, language, version))
        return rows[0][0] if rows else None

    def template_nodes(self, template: str, version: str) -> list[Node]:
        """Every node (any run) made with this template ("en/constraints") at this version hash."""
        rows = self.query(f"SELECT {','.join(NODE_FIELDS)} FROM nodes WHERE template=? AND template_version=? "
                          "ORDER BY created_at, id", (template, version))
        return [Node(**dict(r)) for r in rows]

    def tuning_dev_run_ids(self) -> set[str]:
        """Runs made by tuning sessions (one per candidate), to tell them from the user's own runs."""
        return {r[0] for r in self.query("SELECT dev_run_id FROM tuning_candidates WHERE dev_run_id IS NOT NULL")}

    # -- batch jobs (issue 13, evolab/engine/batch.py) --------------------------------------------------------
    BATCH_OPEN = ("submitting", "validating", "in_progress", "finalizing", "cancelling", "exported")

    @contextmanager
    def durable(self) -> Iterator[None]:
        """The transactions inside commit with synchronous=FULL: on disk when each commits, even across a power
        loss (WAL with synchronous=NORMAL, the store's setting, may roll back the last commits). For what must
        survive before money is spent: a batch job's row before the job is submitted, its provider id right
        after (issue 22). Not inside a transaction: SQLite changes the setting only outside one."""
        with self._lock:
            if self._conn.in_transaction:
                raise RuntimeError("Store.durable() inside a transaction")
            self._conn.execute("PRAGMA synchronous=FULL")
            try:
                yield
            finally:
                self._conn.execute("PRAGMA synchronous=NORMAL")

    def add_batch(self, run_id: str, pass_no: int, engine: str, lines: list[tuple[str, str]],
                  input_file_id: str | None = None, status: str = "submitting") -> int:
        """A job about to be created (or a file written for another engine), with its (custom_id, request_hash)
        lines; its provider id follows with update_batch the moment the provider gives one."""
        now = time.time()
        with self.transaction() as c:
            cur = c.execute("INSERT INTO batches (run_id, pass, engine, input_file_id, status, n_requests, created_at, "
                            "updated_at) VALUES (?,?,?,?,?,?,?,?)",
                            (run_id, pass_no, engine, input_file_id, status, len(lines), now, now))
            batch_id = int(cur.lastrowid)
            c.executemany("INSERT OR REPLACE INTO batch_lines (batch_id, custom_id, request_hash) VALUES (?,?,?)",
                          [(batch_id, cid, key) for cid, key in lines])
        return batch_id

    def update_batch(self, batch_id: int, **fields: Any) -> None:
        allowed = {"provider_batch_id", "input_file_id", "output_file_id", "error_file_id", "status", "n_completed",
                   "n_failed", "imported", "error"}
        if not fields or set(fields) - allowed:
            raise ValueError(f"update_batch takes {sorted(allowed)}, not {sorted(set(fields) - allowed)}")
        cols = ", ".join(f"{k}=?" for k in fields)
        with self.transaction() as c:
            c.execute(f"UPDATE batches SET {cols}, updated_at=? WHERE id=?", (*fields.values(), time.time(), batch_id))

    def batches(self, run_id: str, open_only: bool = False) -> list[dict[str, Any]]:
        """A run's jobs, oldest first; `open_only`: those not yet imported (still to poll, or to read back)."""
        sql = "SELECT * FROM batches WHERE run_id=?" + (" AND imported=0" if open_only else "") + " ORDER BY id"
        return [dict(r) for r in self.query(sql, (run_id,))]

    def batch_line_hashes(self, batch_id: int) -> dict[str, str]:
        """custom_id -> request_hash of a job's lines."""
        return {r[0]: r[1] for r in self.query("SELECT custom_id, request_hash FROM batch_lines WHERE batch_id=?",
                                               (batch_id,))}

    def batch_line_failures(self, run_id: str) -> dict[str, tuple[int, str]]:
        """request_hash -> (how many jobs failed to answer it, the last error), for the run's requests not answered."""
        rows = self.query(
            "SELECT l.request_hash, COUNT(*), MAX(b.id), l.error FROM batch_lines l JOIN batches b ON b.id = l.batch_id "
            "WHERE b.run_id=? AND l.status='failed' GROUP BY l.request_hash", (run_id,))
        return {r[0]: (int(r[1]), r[3] or "the batch job did not answer it") for r in rows}

    def import_batch_results(self, batch_id: int, answered: list[tuple[str, str, dict[str, Any], LLMCall]],
                             failed: list[tuple[str, str]]) -> None:
        """One transaction: each answered line's cache row and call row (flagged batch), each failed line's error,
        and the job marked imported (a kill before it imports it again, never half)."""
        now = time.time()
        with self.transaction() as c:
            for custom_id, key, response, call in answered:
                c.execute("INSERT OR REPLACE INTO cache VALUES (?,?,?,?)",
                          (key, call.model, json.dumps(response, ensure_ascii=False), now))
                self._put_call(c, call)
                c.execute("UPDATE calls SET batch=1 WHERE id=last_insert_rowid()")
                c.execute("UPDATE batch_lines SET status='answered', error=NULL WHERE batch_id=? AND custom_id=?",
                          (batch_id, custom_id))
            c.executemany("UPDATE batch_lines SET status='failed', error=? WHERE batch_id=? AND custom_id=?",
                          [(error[:500], batch_id, custom_id) for custom_id, error in failed])
            c.execute("UPDATE batches SET imported=1, updated_at=? WHERE id=?", (now, batch_id))

    def call_keys(self, run_id: str) -> set[tuple[str, str | None]]:
        """(request_hash, node_id) of the run's stored calls: a batch pass records a cache hit only once."""
        self.flush()
        return {(r[0], r[1]) for r in self.query("SELECT request_hash, node_id FROM calls WHERE run_id=? AND "
                                                 "request_hash IS NOT NULL", (run_id,))}

    def batch_call_count(self, run_id: str) -> int:
        self.flush()
        return int(self.query("SELECT COUNT(*) FROM calls WHERE run_id=? AND batch=1", (run_id,))[0][0])


class _Writer:
    """One thread with its own Store (connection) that performs submitted writes in order.

    The writes waiting in the queue when the thread gets to them go in one transaction (up to MAX_BATCH), each in
    its own savepoint: one commit instead of one per call row, cache row and step, which at hundreds of calls a
    second is most of the writer's CPU. A write that fails rolls back alone (its future gets the error); futures
    are resolved only once the batch is committed, so a resolved future, a flush and a dropped pending cache row
    all mean "in the file". Nothing waits to fill a batch: a lone write is committed at once."""

    MAX_BATCH = 512

    def __init__(self, path: str):
        self.path = path
        self._queue: queue.Queue[tuple[str, tuple, Future] | None] = queue.Queue()
        self._errors: list[BaseException] = []
        self._thread = threading.Thread(target=self._loop, name="evolab-store-writer", daemon=True)
        self._thread.start()

    def submit(self, method: str, args: tuple) -> Future:
        future: Future = Future()
        self._queue.put((method, args, future))
        return future

    def flush(self) -> None:
        done: Future = Future()
        self._queue.put(("_flush_marker", (), done))
        done.result()
        if self._errors:
            error, self._errors = self._errors[0], []
            raise error

    def stop(self) -> None:
        self.flush()
        self._queue.put(None)
        self._thread.join(timeout=30)

    def _loop(self) -> None:
        store = Store(self.path)
        try:
            while True:
                batch = [self._queue.get()]
                while batch[-1] is not None and len(batch) < self.MAX_BATCH:
                    try:
                        batch.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
                stop = batch[-1] is None
                self._run(store, [item for item in batch if item is not None])
                if stop:
                    return
        finally:
            store.close()

    def _run(self, store: Store, batch: list[tuple[str, tuple, Future]]) -> None:
        outcomes: list[tuple[str, Future, Any, BaseException | None]] = []
        writes = [item for item in batch if item[0] != "_flush_marker"]
        if writes:
            try:
                with store.transaction():
                    for method, args, future in writes:
                        try:
                            with store.transaction():  # a savepoint: a failed write rolls back alone
                                outcomes.append((method, future, getattr(store, method)(*args), None))
                        except BaseException as e:
                            if not store._conn.in_transaction:  # SQLite rolled the whole batch back (disk full)
                                raise
                            outcomes.append((method, future, None, e))
            except BaseException as e:  # the batch's BEGIN or COMMIT failed: none of it is in the file
                outcomes = [(method, future, None, e) for method, _, future in writes]
        for method, future, value, error in outcomes:
            if error is None:
                future.set_result(value)
            else:  # kept for flush() and for whoever awaits the future
                logging.getLogger(__name__).warning("store write %s failed: %s", method, error)
                self._errors.append(error)
                future.set_exception(error)
        for method, _, future in batch:
            if method == "_flush_marker":
                future.set_result(None)
