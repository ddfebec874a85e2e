"""A run: rounds of evolve -> eliminate -> respond -> eliminate -> score, with the paper's semantics.

Each round evolves every live instruction of a lineage once (K times with fan-out K) with a sampled
operation; a kept child joins the pool, and when all children of a node are eliminated the node stays
in the pool for the next round (WizardLM section 3.3). Each seed's lineage advances on its own, so the
one concurrency limit of the client stays full from start to end (no barrier between seeds).

Node ids and operation choices are derived from (run, parent, round, slot) and the random seed, so a
resumed run rebuilds the same tree, and finished steps found in the store are reused without a call.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

from evolab.embeddings.novelty import ROUGE_L_MAX, RougeIndex
from evolab.engine import eliminator, evolver, plugins, responder, scoring
from evolab.engine.adaptive import ADAPTIVE, AdaptiveOperations
from evolab.engine.checking import check_in_run
from evolab.engine.lease import leased
from evolab.engine.operations import sample_operation, weights_of
from evolab.engine.templates import run_templates
from evolab.llm.base import Backend, BudgetExceeded, LLMError, mask_secrets
from evolab.llm.client import LLMClient, client_for, make_backend
from evolab.llm.ratelimit import CallsStopped
from evolab.schema import ELIMINATED, FAILED, KEPT, PENDING, SEED, Node, RunConfig, Score, Seed
from evolab.store import Store
from evolab.text.language import detect_language

UNREADABLE = "unreadable"
ProgressCallback = Callable[[dict[str, Any]], None]
REUSABLE = (KEPT, ELIMINATED)  # a resumed run retries failed and pending steps
# After this many steps in a row fail on the endpoint (after the client's own retries), the run stops
# as failed instead of marking every remaining node llm_error; fix the endpoint and resume.
MAX_FAILED_STEPS_IN_A_ROW = 10


class RunStopped(Exception):
    """Raised inside a lineage when the user stopped the run or the budget ran out."""


@dataclass
class StepResult:
    node: Node
    verdicts: list[eliminator.Verdict] = field(default_factory=list)
    scores: list[Score] = field(default_factory=list)
    reused: bool = False


def child_id(run_id: str, parent_id: str, round_: int, slot: int) -> str:
    return hashlib.sha1(f"{run_id}|{parent_id}|{round_}|{slot}".encode()).hexdigest()[:16]


def seed_id(run_id: str, index: int) -> str:
    return hashlib.sha1(f"{run_id}|seed|{index}".encode()).hexdigest()[:16]


def run_language(config: RunConfig, seed: Seed) -> str:
    if config.language in ("en", "ko"):
        return config.language
    return seed.language or detect_language(seed.instruction + " " + seed.input)


def verdict_score(node_id: str, v: eliminator.Verdict) -> Score:
    """Every rule's verdict is stored as a score row `rule:<id>` (1 passed, 0 failed, None unreadable) with
    its detail."""
    value = None if v.unreadable else (1.0 if v.passed else 0.0)
    return Score(node_id, f"rule:{v.rule}", value, v.judge, v.detail[:500])


def expected_steps(n_seeds: int, rounds: int, fanout: int) -> int:
    """Child steps if every child were kept (with K = 1 the pool never grows, so this is exact)."""
    return n_seeds * sum(fanout ** r for r in range(1, rounds + 1))


class Engine:
    def __init__(self, store: Store, run_id: str, client: LLMClient, config: RunConfig,
                 progress: ProgressCallback | None = None, stop_event: threading.Event | None = None):
        self.store, self.run_id, self.client, self.config = store, run_id, client, config
        self.progress = progress
        self.stop_event = stop_event or threading.Event()
        self.stop_reason: str | None = None
        self.failed_in_a_row = 0
        self.last_error: str | None = None
        self.counts: Counter[str] = Counter()
        self.rules: Counter[str] = Counter()
        self.started = time.time()
        self.expected = 0
        # Rounds every lineage has finished (the novelty filter waits on them), and its pool per round.
        self._lineages = 0
        self._round_done_count: Counter[int] = Counter()
        self._round_events: dict[int, asyncio.Event] = {}
        self._pool_by_round: dict[int, RougeIndex] = {}
        self.scorers = scoring.chosen_scorers(config)
        self.score_context = scoring.ScoreContext(client, config)
        self.templates = run_templates(store, config)  # stored template versions the run names (--template)
        # --ops adaptive: Thompson sampling of operations, every decision in the store (evolab/engine/adaptive.py)
        self.weights = weights_of(config.operation_weights)
        self.adaptive = (AdaptiveOperations(store, run_id, [op for op, w in self.weights.items() if w > 0],
                                            config.random_seed)
                         if config.operation_sampling == ADAPTIVE else None)

    # -- one step ---------------------------------------------------------------------------------
    def _check_stop(self) -> None:
        if self.stop_reason is None and self.stop_event.is_set():
            self.stop_reason = "stopped"
        if self.stop_reason:
            raise RunStopped(self.stop_reason)

    async def evolve_child(self, parent: Node, round_: int, slot: int, operation: str | None = None,
                           reuse: bool = True) -> StepResult:
        """Evolve `parent` once; eliminate, respond, score; store the child when it is done."""
        cfg = self.config
        node_id = child_id(self.run_id, parent.id, round_, slot)
        if reuse:
            existing = self.store.get_node(node_id)
            if existing is not None and (existing.status in REUSABLE or
                                         (existing.status == FAILED and self._moved_on(parent, round_))):
                self._count(existing)
                if self.adaptive is not None:  # a step stored before its reward was: counted now
                    await self.adaptive.observe(existing, parent)
                await self._check_answer(existing)  # --check-answers: a kept step stored before its check
                return StepResult(existing, reused=True)
        self._check_stop()
        rng = random.Random(f"{cfg.random_seed}|{parent.instruction}|{parent.input}|{round_}|{slot}")
        if operation is None and self.adaptive is not None:
            operation = self.adaptive.choose(node_id, parent.language)
        op = operation or sample_operation(self.weights, rng)
        salt = f"{cfg.random_seed}|{round_}|{slot}"
        node = Node(id=node_id, run_id=self.run_id, parent_id=parent.id, root_id=parent.root_id, round=round_,
                    operation=op, instruction="", input=parent.input, status=PENDING, skill=parent.skill,
                    seed_difficulty=parent.seed_difficulty, language=parent.language)
        verdicts: list[eliminator.Verdict] = []
        scores: list[Score] = []
        try:
            evo = await evolver.evolve(self.client, parent.instruction, parent.input, op, language=node.language,
                                       rng=rng, temperature=cfg.temperature_evolve,
                                       max_tokens=cfg.max_tokens_evolve, node_id=node_id, salt=salt,
                                       template=self.templates.get(f"{node.language}/{op}"))
            node.instruction, node.input = evo.instruction, evo.input
            node.prompt, node.raw_output = evo.prompt, evo.raw_output
            node.template, node.template_version = evo.template.name, evo.template.version

            scores += await self._instant_scores(node)
            ctx = eliminator.StepContext(parent=parent, node=node, config=cfg, client=self.client,
                                         novelty_pool=lambda: self.novelty_pool(node),
                                         finish_reason=evo.finish_reason)
            verdicts += await self._cascade(ctx, scores)
            failed = self._failed(verdicts)
            if failed is not None and failed.unreadable:
                node.status, node.rule, node.detail = FAILED, UNREADABLE, failed.detail
            else:
                node.status = ELIMINATED if failed else KEPT
                node.rule, node.detail = (failed.rule, failed.detail) if failed else (None, None)
        except BudgetExceeded as e:
            self.stop_reason = "stopped" if isinstance(e, CallsStopped) else "budget"
            raise RunStopped(self.stop_reason)
        except LLMError as e:
            node.status, node.rule, node.detail = FAILED, "llm_error", str(e)[:500]
            self.failed_in_a_row += 1
            self.last_error = str(e)
            if self.failed_in_a_row >= MAX_FAILED_STEPS_IN_A_ROW and self.stop_reason is None:
                self.stop_reason = "endpoint"
        else:
            self.failed_in_a_row = 0
        scores += [verdict_score(node_id, v) for v in verdicts]
        await self._write("record_step", node, scores)
        if self.adaptive is not None:
            await self.adaptive.observe(node, parent, scores)
        self._count(node)
        await self._check_answer(node)
        return StepResult(node, verdicts, scores)

    async def _check_answer(self, node: Node) -> None:
        """--check-answers: a kept node's (or seed's) numeric answer asked k more times, compared, stored
        (evolab/engine/checking.py)."""
        if not self.config.check_answers:
            return

        try:
            await check_in_run(self.store, self.client, node, self.config)
        except BudgetExceeded as e:
            self.stop_reason = "stopped" if isinstance(e, CallsStopped) else "budget"
            raise RunStopped(self.stop_reason)

    async def _write(self, method: str, *args: Any) -> None:
        """A store write on the store's writer thread, in order after the step's calls and cache rows: neither
        the event loop nor the lineage waits for SQLite's lock (another process may hold it for seconds). The
        run flushes the writes before it reports its status; a crash loses only the queue's tail, whose calls
        are then made again on resume, never stored calls."""
        self.store.submit(method, *args)

    def _moved_on(self, parent: Node, round_: int) -> bool:
        """The lineage already went on from `parent` after round `round_` (a later child of it was kept or
        eliminated): retrying this failed step now would fork the tree, so the failure stays history."""
        return any(c.round > round_ and c.status in REUSABLE for c in self.store.children(parent.id))

    @staticmethod
    def _failed(verdicts: list[eliminator.Verdict]) -> eliminator.Verdict | None:
        return next((v for v in verdicts if not v.passed), None)

    async def _cascade(self, ctx: eliminator.StepContext, scores: list[Score]) -> list[eliminator.Verdict]:
        """Walk the elimination cascade in order, stopping at the first failure. The child is answered just
        before the first rule that needs an answer, and scored just before the first that needs scores (or
        at the end, when it passed everything)."""
        verdicts: list[eliminator.Verdict] = []
        node, cfg = ctx.node, self.config
        for rule in eliminator.CASCADE:
            if not rule.enabled(cfg) or not rule.applies_to(node.language):
                continue
            if rule.needs in (eliminator.RESPONSE, eliminator.SCORES) and node.response is None:
                await self._respond(node, scores)
            if rule.needs == eliminator.SCORES and not ctx.scores:
                ctx.scores = await self._llm_scores(node)
                scores += ctx.scores
            verdict = await rule.check(ctx)
            verdicts.append(verdict)
            if not verdict.passed:
                return verdicts
        if node.response is None:
            await self._respond(node, scores)
        if not ctx.scores:
            scores += await self._llm_scores(node)
        return verdicts

    async def _respond(self, node: Node, scores: list[Score]) -> None:
        """Answer the node; an answer cut at max_tokens is flagged with a score row `truncated_answer` = 1."""
        cfg = self.config
        comp = await responder.respond_completion(
            self.client, node.instruction, node.input, language=node.language,
            temperature=cfg.temperature_respond, max_tokens=cfg.max_tokens_respond, node_id=node.id,
            salt=f"{cfg.random_seed}")
        node.response = comp.text.strip()
        if comp.finish_reason == "length":
            scores.append(Score(node.id, "truncated_answer", 1.0, "finish_reason",
                                f"the answer was cut at max_tokens ({cfg.max_tokens_respond}); raise "
                                "--max-tokens-respond"))

    async def _instant_scores(self, node: Node) -> list[Score]:
        """The scorers that need neither the answer nor the model (complexity): right after evolution."""
        if not node.instruction:
            return []
        rows = [await scoring.run_scorer(s, node, self.score_context) for s in self.scorers if s.instant]
        return [score for r in rows for score in r]

    async def _llm_scores(self, node: Node) -> list[Score]:
        """The other scorers (difficulty, quality, plugins that read the answer), concurrently."""
        rows = await asyncio.gather(*(scoring.run_scorer(s, node, self.score_context)
                                      for s in self.scorers if not s.instant))
        return [score for r in rows for score in r]

    # -- the novelty pool -------------------------------------------------------------------------
    async def novelty_pool(self, node: Node) -> list[str]:
        """What `--dedup` compares a child of round r with: the seeds and the kept nodes of the *other*
        lineages as the pool stood when round r began (rounds < r), never the child's own lineage, whose
        in-depth children keep their ancestors' words. Waiting for every lineage to finish round r - 1 makes
        the tree the same whatever order lineages finish in; only this check waits, the calls before it do not."""
        round_ = node.round
        await self._round_finished(round_ - 1)
        if round_ not in self._pool_by_round:
            await self._flush()  # the steps of round r - 1 are all in the store
            pool = [(n.root_id, n.instruction) for n in self.store.nodes(self.run_id)
                    if n.round < round_ and n.status in (KEPT, SEED)]
            # one index per round (MinHash LSH over a large pool, evolab/embeddings/novelty.py): a child is
            # compared with the few texts that can be over the limit, not the whole pool; built off the loop
            exact = True if self.config.rules.rouge_l_max < ROUGE_L_MAX else None  # LSH is tuned for >= 0.7
            self._pool_by_round[round_] = await asyncio.to_thread(
                RougeIndex, [t for _, t in pool], [r for r, _ in pool], exact=exact)
        return self._pool_by_round[round_].excluding(node.root_id)

    async def _flush(self) -> None:
        """Wait until the store's writer thread has written every queued step."""
        await asyncio.to_thread(self.store.flush)

    async def _round_finished(self, round_: int) -> None:
        if round_ < 1 or self._lineages == 0:
            return
        event = self._round_events.setdefault(round_, asyncio.Event())
        await event.wait()

    def _lineage_done_with(self, round_: int) -> None:
        self._round_done_count[round_] += 1
        if self._round_done_count[round_] >= self._lineages:
            self._round_events.setdefault(round_, asyncio.Event()).set()

    async def finish_seed(self, seed: Node) -> None:
        """Answer and score a seed, as the round-0 baseline of the drift figures."""
        if seed.response is not None:
            await self._check_answer(seed)
            return
        self._check_stop()
        try:
            flags: list[Score] = []
            await self._respond(seed, flags)
            scores = await self._instant_scores(seed) + await self._llm_scores(seed) + flags
        except BudgetExceeded as e:
            self.stop_reason = "stopped" if isinstance(e, CallsStopped) else "budget"
            raise RunStopped(self.stop_reason)
        except LLMError as e:
            seed.detail = f"seed answer failed: {e}"[:500]
            scores = await self._instant_scores(seed)
        await self._write("record_step", seed, scores)
        await self._check_answer(seed)  # the round-0 baseline of the checked-answer share
        if self.adaptive is not None:
            self.adaptive.note_scores(seed.id, scores)

    # -- lineages and the run ----------------------------------------------------------------------
    async def run_lineage(self, seed: Node, until_round: int) -> None:
        pool = [seed]
        finished = 0
        try:
            for round_ in range(1, until_round + 1):
                # Every sibling step finishes (its calls in flight are answered and stored) before a stop or an
                # error ends the lineage: an abandoned call would be paid for, unrecorded, and paid again on resume.
                results = await asyncio.gather(*(self.evolve_child(parent, round_, slot)
                                                 for parent in pool for slot in range(self.config.fanout)),
                                               return_exceptions=True)
                failure = next((r for r in results if isinstance(r, BaseException)), None)
                if failure is not None:
                    raise failure
                next_pool: list[Node] = []
                for i, parent in enumerate(pool):
                    kids = results[i * self.config.fanout:(i + 1) * self.config.fanout]
                    kept = [r.node for r in kids if r.node.status == KEPT]
                    next_pool += kept or [parent]  # an eliminated child leaves its parent in the pool
                pool = next_pool
                finished = round_
                self._lineage_done_with(round_)
        finally:
            # A lineage that stopped early (budget, stop, error) must not keep the others waiting.
            for later in range(finished + 1, until_round + 1):
                self._lineage_done_with(later)

    def seed_nodes(self, seeds: list[Seed]) -> list[Node]:
        """The round-0 nodes, created in one transaction the first time."""
        nodes = []
        for i, s in enumerate(seeds):
            sid = seed_id(self.run_id, i)
            nodes.append(self.store.get_node(sid) or Node(
                id=sid, run_id=self.run_id, parent_id=None, root_id=sid, round=0, operation="seed",
                instruction=s.instruction, input=s.input or "", status=SEED, skill=s.skill,
                seed_difficulty=s.difficulty, language=run_language(self.config, s)))
        self.store.save_nodes(nodes)
        return nodes

    def lineage_jobs(self, roots: list[Node], until: int) -> list:
        """The run's coroutines: every seed's lineage up to round `until`, and the seeds' own answers and scores."""
        self._lineages = len(roots)
        jobs = [self.run_lineage(r, until) for r in roots]
        if self.config.score_seeds:
            if self.adaptive is not None:  # children's rewards wait for their seed's difficulty
                self.adaptive.expect_scores(r.id for r in roots if r.response is None)
            jobs += [self.finish_seed(r) if self.adaptive is None
                     else self.adaptive.while_scoring(r.id, self.finish_seed(r)) for r in roots]
        return jobs

    async def run(self, seeds: list[Seed], until_round: int | None = None) -> str:
        until = min(until_round or self.config.rounds, self.config.rounds)
        self.store.set_run_status(self.run_id, "running")
        self.expected = expected_steps(len(seeds), until, self.config.fanout)
        roots = self.seed_nodes(seeds)
        results = list(await asyncio.gather(*self.lineage_jobs(roots, until), return_exceptions=True))
        try:
            await self._flush()  # every step is in the file before the status says so
        except Exception as e:  # a write that failed (disk full, a locked file past the timeout)
            results.append(e)
        errors = [r for r in results if isinstance(r, BaseException) and not isinstance(r, RunStopped)]
        if errors:
            self.store.set_run_status(self.run_id, "failed",  # stored and shown: keys and URL credentials masked
                                      f"{type(errors[0]).__name__}: {mask_secrets(str(errors[0]))}")
            raise errors[0]
        if self.stop_reason == "endpoint":
            self.store.set_run_status(self.run_id, "failed",
                                      f"Stopped after {self.failed_in_a_row} failed steps in a row; last error: "
                                      f"{self.last_error}. Fix the endpoint, then resume.")
            self._report(final=True)
            return "failed"
        if self.stop_reason == "budget":
            status = "budget"
        elif self.stop_reason:
            status = "stopped"
        else:
            status = "paused" if until < self.config.rounds else "finished"
        self.store.set_run_status(self.run_id, status, None)
        self._report(final=True)
        return status

    # -- progress -------------------------------------------------------------------------------
    def _count(self, node: Node) -> None:
        self.counts[node.status] += 1
        if node.rule:
            self.rules[node.rule] += 1
        self._report()

    def _report(self, final: bool = False) -> None:
        limiter = self._limiter_state(final)
        if self.progress is None:
            return
        done = sum(self.counts.values())
        self.progress({
            "done": done, "expected": max(self.expected, done), "by_status": dict(self.counts),
            "by_rule": dict(self.rules), "calls": self.client.calls_made, "cost_usd": self.client.spent_usd,
            "elapsed_s": time.time() - self.started, "final": final, "limiter": limiter,
        })

    def _limiter_state(self, final: bool) -> dict[str, Any]:
        """The rate limiter's numbers; also kept in the store (every 2 s) for the Runs page of any process."""
        state = self.client.limiter.state()
        now = time.time()
        if final or now - getattr(self, "_limiter_saved", 0.0) >= 2.0:
            self._limiter_saved = now
            self.store.submit("set_meta", f"ratelimit|{self.run_id}", json.dumps({**state, "at": now, "final": final}))
        return state


# -- entry points -----------------------------------------------------------------------------------
def create_run(store: Store, seeds: list[Seed], config: RunConfig, name: str | None = None,
               seed_set: str | None = None) -> str:
    if not seeds:
        raise ValueError("A run needs at least one seed.")
    config = plugins.complete_config(RunConfig.from_dict(config.to_dict()))
    return store.create_run(config, seeds, name=name, seed_set=seed_set)


@leased  # one engine per run, in any process (evolab/engine/lease.py): a second one is refused, naming the holder
async def arun(store: Store, run_id: str, *, backend: Backend | None = None,
               progress: ProgressCallback | None = None, stop_event: threading.Event | None = None,
               until_round: int | None = None) -> str:
    """Run (or resume) a stored run. Returns the final status."""
    check_until_round(until_round)  # before any call: 0 is not "every round"
    run = store.get_run(run_id)
    if run is None:
        raise KeyError(f"No run {run_id!r} in {store.path}.")
    config: RunConfig = run["config"]
    plugins.check_registered(config)  # before any call: a resumed run needs the plugins it started with
    backend = backend or make_backend(config)
    stop_event = stop_event or threading.Event()  # the client's rate limiter drops queued calls when it is set
    client = client_for(store, run_id, config, backend, stop_event=stop_event)
    engine = Engine(store, run_id, client, config, progress=progress, stop_event=stop_event)
    try:
        if hasattr(backend, "check"):
            await backend.check()
        await client.structured_mode()  # probed once per endpoint and model, remembered in the store
        return await engine.run(run["seeds"], until_round=until_round)
    except BaseException as e:
        if isinstance(e, (KeyboardInterrupt, asyncio.CancelledError)):
            store.set_run_status(run_id, "stopped", "interrupted")
        raise
    finally:
        await client.aclose()


def check_until_round(until_round: int | None) -> None:
    """until_round is None (every round) or a round number of at least 1: ValueError otherwise (0 would otherwise
    read as "every round", and pay for them)."""
    if until_round is not None and (isinstance(until_round, bool) or not isinstance(until_round, int)
                                    or until_round < 1):
        raise ValueError(f"until_round must be a round number of at least 1 (or None for every round), "
                         f"not {until_round!r}.")


def run_sync(store: Store, run_id: str, **kwargs: Any) -> str:
    return asyncio.run(arun(store, run_id, **kwargs))


def next_round(store: Store, run_id: str) -> int:
    """The round a stepped batch would run next (1 when nothing was evolved yet)."""
    nodes = store.nodes(run_id)
    return max((n.round for n in nodes), default=0) + 1


# -- interactive stepping ---------------------------------------------------------------------------
async def astep(store: Store, run_id: str, parent_id: str, operation: str | None = None, *,
                backend: Backend | None = None) -> StepResult:
    """Evolve one node once, the way the step-through page does: a new child every call."""
    run = store.get_run(run_id)
    parent = store.get_node(parent_id)
    if run is None or parent is None:
        raise KeyError(f"No run {run_id!r} or node {parent_id!r} in {store.path}.")
    config: RunConfig = run["config"]
    backend = backend or make_backend(config)
    client = client_for(store, run_id, config, backend)
    engine = Engine(store, run_id, client, config)
    round_ = parent.round + 1
    slot = sum(1 for c in store.children(parent_id) if c.round == round_)
    try:
        return await engine.evolve_child(parent, round_, slot, operation=operation, reuse=False)
    finally:
        await client.aclose()


def step_sync(store: Store, run_id: str, parent_id: str, operation: str | None = None, **kwargs: Any) -> StepResult:
    return asyncio.run(astep(store, run_id, parent_id, operation, **kwargs))


def start_interactive(store: Store, seeds: list[Seed], config: RunConfig, name: str = "interactive") -> tuple[str, list[Node]]:
    """A run for stepping by hand: its seed nodes exist, nothing is evolved yet."""
    run_id = create_run(store, seeds, config, name=name)
    engine = Engine(store, run_id, LLMClient(_NoBackend(), None), config)
    nodes = engine.seed_nodes(seeds)
    store.set_run_status(run_id, "interactive")
    return run_id, nodes


def override(store: Store, node_id: str, keep: bool, note: str = "") -> Node:
    """Keep or discard a node by hand, whatever the rules said; the rules' verdicts stay stored."""
    node = store.get_node(node_id)
    if node is None:
        raise KeyError(f"No node {node_id!r}.")
    if node.status == SEED:
        raise ValueError("A seed cannot be kept or discarded.")
    was = f"{node.status}" + (f" ({node.rule})" if node.rule else "")
    node.status = KEPT if keep else ELIMINATED
    node.rule = None if keep else "manual"
    node.detail = f"set by hand (was {was})" + (f": {note}" if note else "")
    store.save_node(node)
    return node


class _NoBackend:
    model = "none"

    async def complete(self, *a: Any, **k: Any):  # pragma: no cover - never called
        raise LLMError("no backend")

    async def aclose(self) -> None:
        return None
