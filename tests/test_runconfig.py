"""One RunConfig builder and validator for the CLI and the app (evolab/engine/runconfig.py): the same bad choice
gets the same message from `python -m evolab run` (exit 2) and from the Runs page."""
from __future__ import annotations

import json

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest
from test_app import APP, _app_env, _fresh_resources, _navigation_mode, clean, read_markdown, stub_module  # noqa: F401

from evolab.app import support as app_support
from evolab.app.support import Settings
from evolab.cli.main import main
from evolab.engine.runconfig import RunConfigError, build_run_config
from evolab.llm.local import LOCAL_TOKEN_LIMITS
from evolab.schema import RunConfig

URL = "http://127.0.0.1:9/v1"  # never called: every case stops before a run starts
UNPRICED = "my-llama-70b"

# (CLI arguments, the app's choices, the message both give)
CASES = [
    (["--rounds", "0"], {"rounds": 0}, "--rounds must be at least 1."),
    (["--fanout", "0"], {"fanout": 0}, "--fanout must be at least 1."),
    (["--concurrency", "0"], {"concurrency": 0}, "--concurrency must be at least 1."),
    (["--rpm", "0"], {"rpm": 0}, "--rpm must be at least 1."),
    (["--tpm", "0"], {"tpm": 0}, "--tpm must be at least 1."),
    (["--max-tokens-respond", "0"], {"max_tokens_respond": 0}, "--max-tokens-respond must be at least 1."),
    (["--budget-tokens", "0"], {"budget_tokens": 0}, "--budget-tokens must be at least 1."),
    (["--check-answers", "--check-k", "0"], {"check_answers": True, "check_k": 0}, "--check-k must be at least 1."),
    (["--scorers", "nope"], {"scorers": ["nope"]}, "--scorers: Unknown scorer 'nope'"),
    (["--rule-off", "nope"], {"rule_off": ["nope"]}, "--rule-off nope: not a rule"),
    (["--ops", "deepen=-1"], {"operation_weights": {"deepen": -1.0}}, "--ops: Weight for deepen is negative"),
    (["--ops", "deepen=0"], {"operation_weights": {"deepen": 0.0}},
     "--ops: Give at least one operation with a positive weight."),
    (["--price", "abc"], {"price": "abc"}, "--price 'abc': give the price as IN,OUT"),
]


@pytest.fixture
def seed_file(tmp_path):
    path = tmp_path / "seed_file.jsonl"
    path.write_text(json.dumps({"instruction": "Explain compound interest."}) + "\n")
    return str(path)


def cli_error(capfd, tmp_path, seed_file: str, args: list[str]) -> str:
    assert main(["run", seed_file, "--db", str(tmp_path / "cli.db"), *args]) == 2
    err = capfd.readouterr().err
    assert err.startswith("error: ")
    return err.strip().removeprefix("error: ")


def app_error(settings: Settings, choices: dict) -> str:
    with pytest.raises(RunConfigError) as e:
        settings.run_config(**choices)
    return str(e.value)


@pytest.mark.parametrize("args, choices, message", CASES, ids=[c[2][:28] for c in CASES])
def test_the_cli_and_the_app_give_the_same_message(args, choices, message, capfd, tmp_path, seed_file):
    from_cli = cli_error(capfd, tmp_path, seed_file, args)
    from_app = app_error(Settings(db_path=str(tmp_path / "app.db")), choices)
    assert from_cli == from_app and from_cli.startswith(message)


def test_the_weights_table_says_what_ops_says(capfd, tmp_path, seed_file):
    for weight, arg in ((-1, "deepen=-1"), (0, "deepen=0")):
        with pytest.raises(RunConfigError) as e:
            app_support.weights_from_frame(pd.DataFrame({"operation": ["deepen"], "weight": [weight]}))
        assert str(e.value) == cli_error(capfd, tmp_path, seed_file, ["--ops", arg])


def test_an_endpoint_needs_a_model_and_a_scheme(capfd, tmp_path, seed_file):
    no_model = cli_error(capfd, tmp_path, seed_file, ["--base-url", URL])
    settings = Settings(db_path=str(tmp_path / "app.db"), base_url=URL)
    assert settings.problems() == [no_model] and app_error(settings, {}) == no_model
    assert "name the model too" in no_model
    no_scheme = cli_error(capfd, tmp_path, seed_file, ["--base-url", "localhost:8000/v1", "--model", "m"])
    settings = Settings(db_path=str(tmp_path / "app.db"), base_url="localhost:8000/v1", model="m")
    assert settings.problems() == [no_scheme] and "must start with http:// or https://" in no_scheme


def test_a_dollar_budget_without_a_price_is_refused_in_the_same_words(capfd, tmp_path, seed_file):
    from_cli = cli_error(capfd, tmp_path, seed_file, ["--base-url", URL, "--model", UNPRICED, "--budget-usd", "1"])
    config = Settings(db_path=str(tmp_path / "app.db"), base_url=URL, model=UNPRICED).run_config(budget_usd=1.0)
    assert app_support.budget_problems(config) == [from_cli]
    assert "--price IN,OUT" in from_cli and "price field" in from_cli


def test_the_runs_page_shows_the_cli_message(capfd, tmp_path, seed_file):
    db = str(tmp_path / "page.db")
    at = AppTest.from_file(APP, default_timeout=60)
    at.session_state["settings"] = Settings(db_path=db, base_url=URL, model=UNPRICED)
    at.run()
    at.switch_page("pages/runs.py").run()
    at.number_input(key="run_budget").set_value(1.0).run()
    clean(at)
    budget = cli_error(capfd, tmp_path, seed_file, ["--base-url", URL, "--model", UNPRICED, "--budget-usd", "1"])
    assert budget in [read_markdown(e.value) for e in at.error]
    at.text_input(key="run_price").set_value("abc").run()
    clean(at)
    price = cli_error(capfd, tmp_path, seed_file, ["--base-url", URL, "--model", UNPRICED, "--price", "abc"])
    assert price in [read_markdown(e.value) for e in at.error]
    assert all(b.disabled for b in at.button if b.label in ("Start run", "Run round 1 only"))


def test_the_builder_defaults():
    local = build_run_config()
    assert local.model == "smollm2" and local.base_url is None
    assert {k: getattr(local, k) for k in LOCAL_TOKEN_LIMITS} == LOCAL_TOKEN_LIMITS
    assert set(local.operation_weights) and local.operation_sampling == "weights"
    remote = build_run_config(model="gpt-4o-mini", base_url=f" {URL} ", max_tokens_judge=64, rule_off=["refusal"],
                              rules={"duplicate": True}, ops="adaptive:constraints,deepen", price=[0.5, 1.5])
    assert remote.base_url == URL and remote.max_tokens_respond == RunConfig().max_tokens_respond
    assert remote.max_tokens_judge == 64 and remote.rules.refusal is False and remote.rules.duplicate is True
    assert remote.operation_sampling == "adaptive" and remote.price == [0.5, 1.5]
    with pytest.raises(TypeError, match="no field 'nope'"):
        build_run_config(nope=1)
