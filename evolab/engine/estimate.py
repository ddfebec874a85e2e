"""What a run will cost before it starts: calls, tokens and money as a low / expected / high range.

Per child step: evolve, respond, equality judge, and one call per LLM scorer the run uses (difficulty and
quality by default: 5 calls when kept; fewer when a cheap check eliminates it). Instructions grow by about 20 words a round (the templates ask for 10-20).
- low: one pool node per seed (K = 1 behaviour), short answers, half the children stop at cheap checks;
- expected: every child kept, typical answer lengths;
- high: every child kept (the pool grows as K^round), every reply as long as max_tokens allows.
"""
from __future__ import annotations

from evolab.engine.checking import detect_checkable
from evolab.engine.operations import OPERATION_REGISTRY, weights_of
from evolab.engine.scoring import chosen_scorers
from evolab.llm.pricing import count_tokens, resolve_batch_price, resolve_price, tokenizer_for
from evolab.schema import RunConfig, Seed

WORDS_ADDED_PER_ROUND = 20
TOKENS_PER_WORD = 1.4


def estimate_run(seeds: list[Seed], config: RunConfig) -> dict:
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
                     "cost_usd": cost,
                     "cost_usd_batch": batch_price.cost(int(prompt), int(completion)) if batch_price else None}
    return {"model": model, "seeds": len(seeds), "rounds": config.rounds, "fanout": config.fanout,
            "tokenizer": tokenizer_for(model).name, "price_known": price is not None,
            "price": price.to_dict() if price else None, "price_text": price_text(price, model),
            "batch_price_text": price_text(batch_price, model),
            "budget_usd": config.budget_usd, "budget_tokens": config.budget_tokens, **out}


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


def format_estimate(est: dict) -> str:
    lines = [f"Estimate for {est['seeds']} seeds x {est['rounds']} rounds, fan-out {est['fanout']}, "
             f"model {est['model']} (tokens counted with {est['tokenizer']})",
             f"Price: {est['price_text']}",
             f"Batch price (--batch): {est['batch_price_text']}",
             f"{'':10}{'calls':>10}{'prompt tok':>14}{'output tok':>14}{'cost USD':>12}{'batch USD':>12}"]
    for k in ("low", "expected", "high"):
        e = est[k]
        batch = f"{e['cost_usd_batch']:>12.4f}" if e.get("cost_usd_batch") is not None else f"{'unknown':>12}"
        lines.append(f"{k:10}{e['calls']:>10,}{e['prompt_tokens']:>14,}{e['completion_tokens']:>14,}"
                     f"{e['cost_usd']:>12.4f}{batch}")
    if est.get("budget_tokens"):
        tokens = est["expected"]["prompt_tokens"] + est["expected"]["completion_tokens"]
        lines.append(f"Token budget {est['budget_tokens']:,}: the expected case needs {tokens:,}.")
    return "\n".join(lines)
