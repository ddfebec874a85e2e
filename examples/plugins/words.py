"""An evolab plugin: a scorer named `words`, the answer's length in words (no LLM call).

Written only against the documented plugin API (`evolab.plugins`). Try it:

    EVOLAB_PLUGINS=words PYTHONPATH=examples/plugins python -m evolab run seeds.jsonl --scorers complexity,words

The score is stored for every answered node under the metric `words`: it shows in the lineage export, in
`python -m evolab runs`, and among the Drift page's metrics.
"""
from evolab.plugins import Scorer, register_scorer

__version__ = "1.0"


class Words(Scorer):
    """The answer's length in words (whitespace-separated), a cheap proxy for how much it says."""

    name = "words"
    label = "Answer length (words)"
    needs_response = True  # scored once the responder has answered

    def score(self, node, context):
        if node.response is None:
            return None
        return float(len(node.response.split()))


register_scorer(Words())
