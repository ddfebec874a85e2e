"""Prices and budgets: exact model ids and dated snapshots (never name prefixes), price tables the user can
override (--prices FILE, EVOLAB_PRICES as JSON or a path, --price IN,OUT), the price the estimate says it
used, and every budget kind (USD, tokens) stopping a run before it overspends, priced and unpriced."""
from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys

import pytest
from conftest import ROOT, STUB_KEY_ENV, AllInFlight, openai_backend_for

from evolab.app import support as app_support
from evolab.engine import pipeline
from evolab.engine.estimate import estimate_run, format_estimate
from evolab.llm import BudgetExceeded, FakeBackend, LLMClient, pricing
from evolab.llm.client import PriceUnknown
from evolab.schema import RunConfig, Seed
from evolab.store import Store
from evolab.testing.stub_server import StubServer

SEEDS = [Seed("Explain why the sky is blue."), Seed("Write a short poem about the sea."),
         Seed("Give three tips for learning a new language."), Seed("Describe how a bicycle gear system works."),
         Seed("Summarise the plot of a film you like in two sentences.")]


# -- which price ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("model,matched,price", [
    ("gpt-4o-mini", "gpt-4o-mini", (0.15, 0.6)),
    ("gpt-4o-mini-2024-07-18", "gpt-4o-mini", (0.15, 0.6)),  # a dated snapshot is its model
    ("o3-pro", "o3-pro", (20.0, 80.0)),  # not o3's price: ten times that
    ("o3-pro-2025-06-10", "o3-pro", (20.0, 80.0)),
    ("o3", "o3", (2.0, 8.0)),
    ("o1", "o1", (15.0, 60.0)),
    ("o1-pro", "o1-pro", (150.0, 600.0)),
    ("openai/gpt-4.1-mini", "gpt-4.1-mini", (0.4, 1.6)),  # provider prefix
    ("gpt-4o-2024-05-13", "gpt-4o-2024-05-13", (5.0, 15.0)),  # a snapshot with its own price keeps it
    ("gpt-3.5-turbo-0125", "gpt-3.5-turbo", (0.5, 1.5)),  # -MMDD snapshots
    ("smollm2", "smollm2", (0.0, 0.0)),
])
def test_exact_ids_and_snapshots(model, matched, price):
    p = pricing.resolve_price(model)
    assert p is not None and (p.matched, (p.input, p.output), p.source) == (matched, price, "built-in table")


@pytest.mark.parametrize("model", ["o3-deep-research", "gpt-4o-mini-search-preview", "gpt-4o-realtime", "o3-x",
                                   "gpt-5-chat-latest", "my-llama-70b", "gpt-3.5-turbo-1106", "gpt-4o-mini-2024"])
def test_no_name_prefix_matching(model):
    assert pricing.resolve_price(model) is None  # unknown rather than a guess


def test_the_table_is_a_data_file():
    data = json.loads(pricing.PRICES_FILE.read_text(encoding="utf-8"))
    assert pricing.PRICES_FILE.name == "prices.json" and pricing.PRICES_FILE.parent.name == "data"
    assert data["prices"]["o3-pro"] == [20.0, 80.0]
    assert pricing.DEFAULT_PRICES["gpt-4o-mini"] == (0.15, 0.6)


def test_overrides_file_env_json_env_path_and_price(tmp_path, monkeypatch):
    f = tmp_path / "prices.json"
    f.write_text(json.dumps({"my-llama-70b": [0.9, 0.9], "gpt-4o-mini": {"input": 1, "output": 2}}))
    p = pricing.resolve_price("my-llama-70b", prices_file=str(f))
    assert (p.input, p.output, p.source) == (0.9, 0.9, f"file {f}")
    assert pricing.resolve_price("gpt-4o-mini", prices_file=str(f)).output == 2.0
    assert pricing.resolve_price("gpt-4o-mini-2024-07-18", prices_file=str(f)).output == 2.0
    monkeypatch.setenv("EVOLAB_PRICES", '{"my-llama-70b": [0.5, 1.5]}')
    p = pricing.resolve_price("my-llama-70b")
    assert (p.input, p.output, p.source) == (0.5, 1.5, "EVOLAB_PRICES")
    assert pricing.resolve_price("my-llama-70b", prices_file=str(f)).input == 0.9  # the file beats the env
    monkeypatch.setenv("EVOLAB_PRICES", str(f))  # a path works too
    p = pricing.resolve_price("my-llama-70b")
    assert (p.input, p.source) == (0.9, f"EVOLAB_PRICES file {f}")
    p = pricing.resolve_price("my-llama-70b", price=[3, 4])  # --price beats every table
    assert (p.input, p.output, p.source) == (3.0, 4.0, "--price")
    monkeypatch.setenv("EVOLAB_PRICES", str(tmp_path / "missing.json"))
    with pytest.raises(pricing.PricesError, match="EVOLAB_PRICES"):
        pricing.resolve_price("gpt-4o")
    monkeypatch.delenv("EVOLAB_PRICES")
    bad = tmp_path / "bad.json"
    bad.write_text('{"m": [1]}')
    with pytest.raises(pricing.PricesError, match=r"bad\.json.*'m'"):
        pricing.resolve_price("m", prices_file=str(bad))


def test_parse_price():
    assert pricing.parse_price("0.5,1.5") == (0.5, 1.5)
    assert pricing.parse_price(" $2 , $8 ") == (2.0, 8.0)
    for bad in ("1", "a,b", "1,2,3", "-1,2"):
        with pytest.raises(pricing.PricesError):
            pricing.parse_price(bad)


def test_the_estimate_says_which_price_it_used(tmp_path):
    est = estimate_run(SEEDS, RunConfig(model="o3-pro-2025-06-10", rounds=2))
    assert est["price"] == {"model": "o3-pro-2025-06-10", "matched": "o3-pro", "input": 20.0, "output": 80.0,
                            "source": "built-in table"}
    text = format_estimate(est)
    assert "as o3-pro" in text and "$20 in / $80 out per million tokens" in text and "built-in table" in text
    est = estimate_run(SEEDS, RunConfig(model="my-llama-70b", price=[1.0, 2.0]))
    assert "--price" in est["price_text"] and est["expected"]["cost_usd"] > 0
    est = estimate_run(SEEDS, RunConfig(model="my-llama-70b"))
    assert not est["price_known"] and "no price known" in est["price_text"] and est["expected"]["cost_usd"] == 0


# -- every budget kind stops a run before it overspends ----------------------------------------------------------
def make_run(store, stub, model="gpt-4o-mini", **cfg) -> str:
    config = RunConfig(model=model, base_url=stub.base_url, **{"rounds": 3, "fanout": 2, "concurrency": 6, **cfg})
    return pipeline.create_run(store, SEEDS, config)


def spent_tokens(store, run_id) -> int:
    return sum(c.prompt_tokens + c.completion_tokens for c in store.calls(run_id) if not c.cached)


@pytest.mark.parametrize("model,extra", [("gpt-4o-mini", {}), ("o3-pro", {}),
                                         ("my-llama-70b", {"price": [0.5, 1.5]})],
                         ids=["priced", "priced-o3-pro", "unpriced-with-price"])
def test_usd_budget_stops_before_overspending(stub, store, model, extra):
    full = make_run(store, stub, model=model, **extra)
    assert pipeline.run_sync(store, full, backend=openai_backend_for(stub, model)) == "finished"
    budget = store.run_cost(full) / 3  # a third of what the whole run costs
    run_id = make_run(store, stub, model=model, budget_usd=budget, random_seed=1, **extra)  # no cache hits
    stub.reset()
    assert pipeline.run_sync(store, run_id, backend=openai_backend_for(stub, model)) == "budget"
    assert 0 < store.run_cost(run_id) <= budget
    assert all(c.price_known for c in store.calls(run_id))
    if "price" in extra:  # billed at the given price
        c = store.calls(run_id)[-1]
        assert c.cost_usd == pytest.approx((c.prompt_tokens * 0.5 + c.completion_tokens * 1.5) / 1e6)


@pytest.mark.parametrize("model", ["gpt-4o-mini", "my-llama-70b"], ids=["priced", "unpriced"])
def test_token_budget_stops_before_overspending(stub, store, model):
    budget = 6000
    run_id = make_run(store, stub, model=model, budget_tokens=budget)
    assert pipeline.run_sync(store, run_id, backend=openai_backend_for(stub, model)) == "budget"
    spent = spent_tokens(store, run_id)
    assert 0 < spent <= budget
    reported = sum(u["prompt_tokens"] + u["completion_tokens"] for u in (r["usage"] for r in stub.chat_requests())
                   if u)
    assert reported == spent  # what the endpoint counted; no call in flight was abandoned unrecorded
    assert not [n for n in store.nodes(run_id) if n.status == "failed"]  # a budget stop is not a failure
    # Raise it and resume: the run goes on, still within the new budget.
    cfg = store.get_run(run_id)["config"]
    cfg.budget_tokens = 12_000
    store.update_run_config(run_id, cfg)
    status = pipeline.run_sync(store, run_id, backend=openai_backend_for(stub, model))
    assert status in ("budget", "finished") and spent < spent_tokens(store, run_id) <= 12_000


def test_both_budgets_the_first_one_reached_stops(stub, store):
    run_id = make_run(store, stub, budget_usd=100.0, budget_tokens=3000)
    assert pipeline.run_sync(store, run_id, backend=openai_backend_for(stub)) == "budget"
    assert spent_tokens(store, run_id) <= 3000 and store.run_cost(run_id) < 100.0


def test_budget_holds_with_many_calls_in_flight(store):
    """Each call in flight reserves its worst case, so 32 concurrent calls cannot overshoot together."""
    many = AllInFlight(5, then_s=0.02, skip=1)  # after the probe, five calls are answered once all are in flight
    with StubServer(latency=many) as stub:
        run_id = make_run(store, stub, budget_tokens=20_000, concurrency=32, rounds=4, fanout=3)
        assert pipeline.run_sync(store, run_id, backend=openai_backend_for(stub, timeout_s=120)) == "budget"
        assert many.met and stub.max_in_flight > 4
        reported = sum(r["usage"]["prompt_tokens"] + r["usage"]["completion_tokens"] for r in stub.chat_requests()
                       if r["usage"])
    assert 0 < spent_tokens(store, run_id) == reported <= 20_000


def test_token_budget_refuses_a_call_before_sending(stub, store):
    client = LLMClient(openai_backend_for(stub, "my-llama-70b"), store, budget_tokens=100)

    async def go():
        try:
            await client.complete([{"role": "user", "content": "Hello?"}], purpose="respond", max_tokens=200)
        finally:
            await client.aclose()
    with pytest.raises(BudgetExceeded, match="Token budget 100"):
        asyncio.run(go())
    assert stub.count() == 0 and store.calls() == []


def test_usd_budget_for_an_unpriced_model_refuses_to_start(stub, store):
    with pytest.raises(PriceUnknown, match="--price IN,OUT"):
        LLMClient(openai_backend_for(stub, "my-llama-70b"), store, budget_usd=1.0)
    run_id = make_run(store, stub, model="my-llama-70b", budget_usd=1.0)
    with pytest.raises(PriceUnknown):
        pipeline.run_sync(store, run_id, backend=openai_backend_for(stub, "my-llama-70b"))
    assert stub.count() == 0
    assert app_support.budget_problems(store.get_run(run_id)["config"])  # the Runs page says so too
    assert not app_support.budget_problems(RunConfig(model="my-llama-70b", budget_usd=1.0, price=[1, 1]))


class _GenerousTokenizer(FakeBackend):
    """An endpoint whose tokenizer counts three times what tiktoken does."""

    async def complete(self, *a, **k):
        comp = await super().complete(*a, **k)
        comp.prompt_tokens *= 3
        return comp


def test_the_prompt_margin_learns_an_endpoint_that_counts_more(store):
    run_id = store.create_run(RunConfig(model="my-llama-70b", budget_tokens=2500), [])
    client = LLMClient(_GenerousTokenizer(model="my-llama-70b"), store, run_id=run_id, budget_tokens=2500,
                       concurrency=1)

    async def go():
        n = 0
        try:
            for i in range(500):
                await client.complete([{"role": "user", "content": f"Question {i}: " + "word " * 40}],
                                      purpose="respond", max_tokens=64)
                n += 1
        except BudgetExceeded:
            return n
        return n
    assert asyncio.run(go()) > 3
    assert client._prompt_margin > 2.5  # it saw the endpoint count about 3x
    assert spent_tokens(store, run_id) <= 2500


# -- the command line ------------------------------------------------------------------------------------------------
@pytest.fixture
def env(tmp_path):
    e = dict(os.environ)
    e["EVOLAB_HOME"] = str(tmp_path / "home")
    e.pop("EVOLAB_DEBUG", None)
    e.pop("EVOLAB_DB", None)
    e.pop("EVOLAB_PRICES", None)
    # A port this test holds (bound, not listening) for the embedded model: nobody else's server, no race.
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        e["EVOLAB_LOCAL_PORT"] = str(held.getsockname()[1])
        yield e


@pytest.fixture
def seeds_file(tmp_path):
    path = tmp_path / "seeds.jsonl"
    path.write_text("".join(json.dumps({"instruction": s.instruction}) + "\n" for s in SEEDS))
    return path


def cli(env, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "evolab", *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def stub_args(stub, model):
    return ["--base-url", stub.base_url, "--model", model, "--api-key-env", STUB_KEY_ENV]


def test_cli_budget_usd_without_a_price_exits_2_and_says_what_to_do(stub, env, seeds_file, tmp_path):
    db = tmp_path / "b.db"
    r = cli(env, "run", seeds_file, "--db", db, "--rounds", 1, *stub_args(stub, "my-llama-70b"), "--budget-usd", 1)
    assert r.returncode == 2
    assert "No price is known for model 'my-llama-70b'" in r.stderr and "--price IN,OUT" in r.stderr
    assert "--budget-tokens" in r.stderr
    assert stub.count() == 0 and not db.exists()


def test_cli_price_makes_a_usd_budget_hold(stub, env, seeds_file, tmp_path):
    db = tmp_path / "b.db"
    r = cli(env, "run", seeds_file, "--db", db, "--rounds", 3, "--fanout", 2, *stub_args(stub, "my-llama-70b"),
            "--price", "30,90", "--budget-usd", "0.5")
    assert r.returncode == 0, r.stderr
    assert "price: my-llama-70b: $30 in / $90 out per million tokens (--price)" in r.stderr
    assert "[budget]" in r.stdout and "--budget-usd X" in r.stderr
    with _closing(Store(db)) as store:
        run_id = store.latest_run_id()
        assert 0 < store.run_cost(run_id) <= 0.5
        assert store.get_run(run_id)["config"].price == [30.0, 90.0]


def test_cli_budget_tokens_for_an_unpriced_model_and_resume(stub, env, seeds_file, tmp_path):
    db = tmp_path / "b.db"
    r = cli(env, "run", seeds_file, "--db", db, "--rounds", 3, "--fanout", 2, *stub_args(stub, "my-llama-70b"),
            "--budget-tokens", 4000)
    assert r.returncode == 0, r.stderr
    assert "price: unknown" in r.stderr and "[budget]" in r.stdout and "--budget-tokens N" in r.stderr
    with _closing(Store(db)) as store:
        run_id = store.latest_run_id()
        first = spent_tokens(store, run_id)
        assert 0 < first <= 4000
    r = cli(env, "resume", "--db", db, "--budget-tokens", 8000)
    assert r.returncode == 0, r.stderr
    with _closing(Store(db)) as store:
        assert first < spent_tokens(store, run_id) <= 8000
        assert store.get_run(run_id)["config"].budget_tokens == 8000
    r = cli(env, "resume", "--db", db, "--budget-usd", 1)  # still no price: refused, config unchanged
    assert r.returncode == 2 and "--price" in r.stderr
    with _closing(Store(db)) as store:
        assert store.get_run(run_id)["config"].budget_usd is None


def test_cli_estimate_with_price_prices_file_and_env(env, seeds_file, tmp_path):
    r = cli(env, "estimate", seeds_file, "--model", "my-llama-70b", "--price", "1,2")
    assert r.returncode == 0 and "Price: my-llama-70b: $1 in / $2 out per million tokens (--price)" in r.stdout
    f = tmp_path / "p.json"
    f.write_text(json.dumps({"prices": {"my-llama-70b": [0.25, 0.75]}}))
    r = cli(env, "estimate", seeds_file, "--model", "my-llama-70b-2025-01-01", "--prices", f)
    assert r.returncode == 0 and "(as my-llama-70b): $0.25 in / $0.75 out" in r.stdout and f"file {f}" in r.stdout
    r = cli({**env, "EVOLAB_PRICES": str(f)}, "estimate", seeds_file, "--model", "my-llama-70b")
    assert r.returncode == 0 and f"EVOLAB_PRICES file {f}" in r.stdout
    r = cli(env, "estimate", seeds_file, "--model", "o3-pro")
    assert "o3-pro: $20 in / $80 out per million tokens (built-in table)" in r.stdout
    for bad in (["--price", "cheap"], ["--prices", tmp_path / "none.json"]):
        r = cli(env, "estimate", seeds_file, "--model", "x", *bad)
        assert r.returncode == 2 and "error:" in r.stderr
    r = cli({**env, "EVOLAB_PRICES": "{not json"}, "estimate", seeds_file, "--model", "x")
    assert r.returncode == 2 and "EVOLAB_PRICES" in r.stderr


class _closing:
    def __init__(self, store):
        self.store = store

    def __enter__(self):
        return self.store

    def __exit__(self, *exc):
        self.store.close()
