"""What a run will cost before it starts: calls, tokens and money as a low / expected / high range.

Per child step: evolve, respond, equality judge, and one call per LLM scorer the run uses (difficulty and
quality by default: 5 calls when kept; fewer when a cheap check eliminates it). Instructions grow by about 20 words a round (the templates ask for 10-20).
- low: one pool node per seed (K = 1 behaviour), short answers, half the children stop at cheap checks;
- expected: every child kept, typical answer lengths;
- high: every child kept (the pool grows as K^round), every reply as long as max_tokens allows.

Time, too (`CallTiming`): each call takes `overhead_s + s_per_output_token * output tokens`, fitted on the endpoint's
stored calls (`observed_timing`), or an assumption stated in words for an endpoint with none (`assumed_timing`). The
calls overlap as they did when observed (calls in flight on average while busy), never more than the run's
concurrency; the embedded model serves one request at a time. A run's own --rpm / --tpm caps bound it too.
"""
from __future__ import annotations

from dataclasses import dataclass

from evolab.engine.checking import detect_checkable
from evolab.engine.operations import OPERATION_REGISTRY, weights_of
from evolab.engine.scoring import chosen_scorers
from evolab.llm.pricing import count_tokens, resolve_batch_price, resolve_price, tokenizer_for
from evolab.schema import LLMCall, RunConfig, Seed
from evolab.store import Store

WORDS_ADDED_PER_ROUND = 20
TOKENS_PER_WORD = 1.4


def estimate_run(seeds: list[Seed], config: RunConfig, timing: "CallTiming | None" = None) -> dict:
    """Calls, tokens, cost and time of a run, low / expected / high. `timing`: how long calls take at this endpoint
    (`observed_timing` from the store); None: `assumed_timing(config)`."""
    if not seeds:
        raise ValueError("No seeds to estimate.")
    model = config.model
    price = resolve_price(model, price=config.price, prices_file=config.prices_file)
    batch_price = resolve_batch_price(model, price=config.price, prices_file=config.prices_file)  # --batch
    template_tokens = _mean_template_tokens(config, model)
    seed_tokens = sum(count_tokens(s.instruction + " " + s.input, model) for s in seeds) / len(seeds)
    answer_typical = min(350, config.max_tokens_respond)
    # --check-answers: k more answers for each answered item whose seed asks for a number (evolab/engine/checking.py)
    check_k = config.check_k * _checkable_share(seeds) if config.check_answers else 0.0
    scenarios = {
        "low": dict(pool_growth=False, kept_share=0.5, answer=min(120, config.max_tokens_respond),
                    evolve_out_extra=10, judge_out=30),
        "expected": dict(pool_growth=True, kept_share=1.0, answer=answer_typical, evolve_out_extra=28,
                         judge_out=60),
        "high": dict(pool_growth=True, kept_share=1.0, answer=config.max_tokens_respond,
                     evolve_out_extra=config.max_tokens_evolve, judge_out=config.max_tokens_judge),
    }
    scorers = [s for s in chosen_scorers(config) if s.uses_llm]
    timing = timing or assumed_timing(config)

    def scorer_tokens(instr: float, answer: float, judge_out: float) -> tuple[float, float]:
        """Prompt and reply tokens of one node's LLM scores."""
        prompt = sum(instr + (answer if s.needs_response else 0) + s.estimate_tokens[0] for s in scorers)
        reply = sum(judge_out if s.estimate_tokens[1] is None else s.estimate_tokens[1] for s in scorers)
        return prompt, reply

    out = {}
    for name, sc in scenarios.items():
        calls = prompt = completion = 0.0
        n = len(seeds)
        if config.score_seeds:  # respond and score each seed
            calls += (1 + len(scorers)) * n
            score_prompt, score_reply = scorer_tokens(seed_tokens, sc["answer"], sc["judge_out"])
            prompt += n * (seed_tokens + 8) + n * score_prompt
            completion += n * (sc["answer"] + score_reply)
            calls += check_k * n
            prompt += check_k * n * (seed_tokens + 8)
            completion += check_k * n * sc["answer"]
        pool = float(n)
        for r in range(1, config.rounds + 1):
            steps = pool * config.fanout
            instr = seed_tokens + r * WORDS_ADDED_PER_ROUND * TOKENS_PER_WORD
            parent = instr - WORDS_ADDED_PER_ROUND * TOKENS_PER_WORD
            evolve_out = min(config.max_tokens_evolve, instr + sc["evolve_out_extra"]) if name != "high" \
                else config.max_tokens_evolve
            kept = steps * sc["kept_share"]
            # every step evolves; kept ones are answered, judged for equality and scored by each LLM scorer
            calls += steps + (2 + len(scorers)) * kept
            score_prompt, score_reply = scorer_tokens(instr, sc["answer"], sc["judge_out"])
            prompt += steps * (template_tokens + parent)
            prompt += kept * ((instr + 8) + (parent + instr + 70) + score_prompt)
            completion += steps * evolve_out + kept * (sc["answer"] + 4 + score_reply)
            calls += check_k * kept
            prompt += check_k * kept * (instr + 8)
            completion += check_k * kept * sc["answer"]
            if sc["pool_growth"]:
                pool = kept if kept else pool
        cost = price.cost(int(prompt), int(completion)) if price else 0.0
        out[name] = {"calls": int(round(calls)), "prompt_tokens": int(prompt), "completion_tokens": int(completion),
                     "cost_usd": cost, "seconds": timing.wall_seconds(calls, prompt, completion, config),
                     "cost_usd_batch": batch_price.cost(int(prompt), int(completion)) if batch_price else None}
    return {"model": model, "seeds": len(seeds), "rounds": config.rounds, "fanout": config.fanout,
            "tokenizer": tokenizer_for(model).name, "price_known": price is not None,
            "price": price.to_dict() if price else None, "price_text": price_text(price, model),
            "batch_price_text": price_text(batch_price, model), "time_text": timing.describe(config),
            "budget_usd": config.budget_usd, "budget_tokens": config.budget_tokens, **out}


# -- time -----------------------------------------------------------------------------------------------
@dataclass
class CallTiming:
    """How long calls take at one endpoint: `overhead_s + s_per_output_token * output tokens` each, with
    `in_flight` calls overlapping on average while it was busy (None: as many as the run's concurrency). `basis`
    says where the figures come from, in words."""

    overhead_s: float
    s_per_output_token: float
    in_flight: float | None
    basis: str
    one_at_a_time: bool = False  # the embedded llama.cpp server answers one request at a time

    def overlap(self, config: RunConfig) -> float:
        if self.one_at_a_time:
            return 1.0
        return max(1.0, min(float(config.concurrency), self.in_flight or float(config.concurrency)))

    def wall_seconds(self, calls: float, prompt_tokens: float, completion_tokens: float, config: RunConfig) -> float:
        serial = calls * self.overhead_s + completion_tokens * self.s_per_output_token
        wall = serial / self.overlap(config)
        if config.rpm:  # the run's own caps bound it as well
            wall = max(wall, calls * 60.0 / config.rpm)
        if config.tpm:
            wall = max(wall, (prompt_tokens + completion_tokens) * 60.0 / config.tpm)
        return wall

    def describe(self, config: RunConfig) -> str:
        overlap = ("one call at a time (the embedded model serves one request at once)" if self.one_at_a_time else
                   f"{self.overlap(config):.1f} calls in flight")
        return (f"{self.basis}: {self.overhead_s:.2f} s a call + {self.s_per_output_token * 1000:.0f} ms per output "
                f"token, {overlap}")


# Assumptions for an endpoint with no stored calls, stated on the page: the embedded 135M model decodes about 80
# tokens a second on 2 CPU cores, 0.3-1 s per short reply (measured when it was packaged); a hosted model is taken at
# about 50 tokens a second after half a second.
ASSUMED_LOCAL = (0.4, 1 / 70)
ASSUMED_REMOTE = (0.5, 1 / 50)
MIN_CALLS_OBSERVED = 5


def assumed_timing(config: RunConfig) -> CallTiming:
    local = not config.base_url
    overhead, per_token = ASSUMED_LOCAL if local else ASSUMED_REMOTE
    what = "the embedded model on this machine's CPU" if local else "a hosted model"
    return CallTiming(overhead, per_token, None, f"assumed for {what} (no stored calls of this endpoint yet)",
                      one_at_a_time=local)


def observed_timing(calls: list[LLMCall], config: RunConfig) -> CallTiming | None:
    """Call timing fitted on stored calls of the endpoint (answered, not from the cache): latency = overhead + slope *
    output tokens by least squares (a negative part falls back to the mean time per token), and how many calls
    overlapped while it was busy (the summed latencies over the time with at least one call in flight). None with
    fewer than MIN_CALLS_OBSERVED calls."""
    done = [c for c in calls if not c.cached and not c.error and c.latency_s > 0]
    if len(done) < MIN_CALLS_OBSERVED:
        return None
    n = len(done)
    xs = [float(c.completion_tokens) for c in done]
    ys = [float(c.latency_s) for c in done]
    mx, my = sum(xs) / n, sum(ys) / n
    var = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / var if var > 0 else 0.0
    overhead = my - slope * mx
    if slope <= 0 or overhead < 0:  # too few or too alike calls for a line: the mean time per output token
        slope, overhead = (sum(ys) / sum(xs), 0.0) if sum(xs) > 0 else (0.0, my)
    busy, end = 0.0, -float("inf")  # the union of [start, end] of every call
    for start, stop in sorted((c.created_at - c.latency_s, c.created_at) for c in done):
        if stop > end:
            busy += stop - max(start, end)
            end = stop
    in_flight = max(1.0, sum(ys) / busy) if busy > 0 else 1.0
    local = not config.base_url
    if local:  # one request at a time: a call's latency included its wait behind the others in flight
        overhead, slope = overhead / in_flight, slope / in_flight
    return CallTiming(overhead, slope, in_flight,
                      f"observed on {n:,} stored calls of {config.model or 'the embedded model'}", one_at_a_time=local)


def endpoint_calls(store: Store, config: RunConfig, max_calls: int = 2000) -> list[LLMCall]:
    """The latest stored calls (up to `max_calls`) of runs on the same endpoint and model as `config`, newest runs
    first: what `observed_timing` fits."""
    out: list[LLMCall] = []
    for run in store.list_runs():
        other = run["config"]
        if (other.base_url or "") != (config.base_url or "") or other.model != config.model:
            continue
        out.extend(store.calls(run["id"])[-(max_calls - len(out)):])
        if len(out) >= max_calls:
            break
    return out


def _checkable_share(seeds: list[Seed]) -> float:
    """Share of seeds whose instruction asks for a number (their evolved children mostly do too)."""
    return sum(detect_checkable(s.instruction, input=s.input).checkable for s in seeds) / len(seeds)


def price_text(price, model: str) -> str:
    """Which price an estimate or a run uses, in words (model matched, per million in/out, where from)."""
    if price is None:
        return (f"no price known for {model}: cost shown as $0 (give one with --price IN,OUT, a --prices file "
                "or EVOLAB_PRICES)")
    return price.describe()


def _mean_template_tokens(config: RunConfig, model: str) -> float:
    weights = {k: v for k, v in weights_of(config.operation_weights).items() if v > 0 and k in OPERATION_REGISTRY}
    langs = ["ko"] if config.language == "ko" else ["en"]
    total = sum(weights.values()) or 1.0
    return sum(w * count_tokens(OPERATION_REGISTRY[op].template(langs[0]).text, model)
               for op, w in weights.items()) / total


def format_seconds(seconds: float) -> str:
    """"45 s", "12 min", "3.5 h": an estimate's time, as precise as it is."""
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    if seconds < 5400:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


def format_estimate(est: dict) -> str:
    lines = [f"Estimate for {est['seeds']} seeds x {est['rounds']} rounds, fan-out {est['fanout']}, "
             f"model {est['model']} (tokens counted with {est['tokenizer']})",
             f"Price: {est['price_text']}",
             f"Batch price (--batch): {est['batch_price_text']}",
             f"Time: {est['time_text']}",
             f"{'':10}{'calls':>10}{'prompt tok':>14}{'output tok':>14}{'time':>12}{'cost USD':>12}{'batch USD':>12}"]
    for k in ("low", "expected", "high"):
        e = est[k]
        batch = f"{e['cost_usd_batch']:>12.4f}" if e.get("cost_usd_batch") is not None else f"{'unknown':>12}"
        lines.append(f"{k:10}{e['calls']:>10,}{e['prompt_tokens']:>14,}{e['completion_tokens']:>14,}"
                     f"{format_seconds(e['seconds']):>12}{e['cost_usd']:>12.4f}{batch}")
    if est.get("budget_tokens"):
        tokens = est["expected"]["prompt_tokens"] + est["expected"]["completion_tokens"]
        lines.append(f"Token budget {est['budget_tokens']:,}: the expected case needs {tokens:,}.")
    return "\n".join(lines)
