"""Template tuning end to end on the stub server, through the CLI: a worked example, not a measurement of models.

The stub plays a model that copies the evolving prompt's words ("given prompt") into half of its rewrites when the
template names those words in its rules (as the shipped constraints template does), and into 1 in 10 otherwise; as
the optimizer it proposes a revision without that line, one that drops {instruction} (rejected), and the revision
plus one more sentence. Which rewrites leak is decided by a hash of the prompt, so the numbers are reproducible and
say how the loop behaves, not how any real model does.

    .venv/bin/python bench/tuning_stub.py            # prints the commands it runs and their output
"""
from __future__ import annotations

import hashlib
import json
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(HERE))

from evolab.cli.main import main  # noqa: E402
from evolab.engine.operations import load_template  # noqa: E402
from evolab.llm.fake import given_prompt, scripted_reply  # noqa: E402
from evolab.testing.stub_server import StubServer  # noqa: E402

LEAKY = ('- Write only the new instruction. Do not explain it, and do not mention these rules or the words '
         '"given prompt" or "rewritten prompt".')
CLEAN = "- Reply with the new instruction alone, in plain words."


def model(messages, purpose):
    text = messages[-1]["content"]
    if purpose == "optimize":
        clean = load_template("constraints", "en").text.replace(LEAKY, CLEAN)
        return json.dumps({"candidates": [
            {"rationale": "Naming the leak words invites them; drop that rule line.", "template": clean},
            {"rationale": "Shorter.", "template": clean.replace("{instruction}", "the instruction")},
            {"rationale": "Also ask for precision.", "template": clean + "\nBe precise."}]})
    if purpose == "evolve":
        h = int(hashlib.sha256(text.encode()).hexdigest(), 16)
        if h % (2 if LEAKY in text else 10) == 0:
            return f"#Rewritten Prompt#:\nFollowing the given prompt: {given_prompt(messages)} Keep it short."
    return scripted_reply(messages, purpose)


def cli(*args: str) -> None:
    print("$ python -m evolab " + " ".join(a if " " not in a else repr(a) for a in args), flush=True)
    code = main(list(args))
    print(f"(exit {code})\n", flush=True)


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp, StubServer(handler=model) as stub:
        db = str(Path(tmp) / "tune.db")
        import os
        os.environ["STUB_KEY"] = "sk-stub"
        endpoint = ["--base-url", stub.base_url, "--model", "gpt-4o-mini", "--api-key-env", "STUB_KEY"]
        cli("run", str(HERE / "evolab/data/finance.jsonl"), "--db", db, "--rounds", "1", "--ops", "constraints",
            "--name", "source", *endpoint)
        cli("tune", "--db", db, "--operation", "constraints", "--candidates", "3", "--dev-seeds", "20",
            "--adopt", "3", "--name", "plain-words")
        cli("tune", "--db", db, "--list", "--operation", "constraints")
        cli("tune", "--db", db, "--operation", "constraints", "--compare", "shipped", "plain-words")
