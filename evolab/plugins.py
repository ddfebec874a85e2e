"""The plugin API: what a plugin module imports to add an operation, an eliminator rule or a scorer.

```python
from evolab.plugins import Scorer, register_scorer

class Words(Scorer):
    \"\"\"The answer's length in words (no LLM call).\"\"\"
    name = "words"
    needs_response = True

    def score(self, node, context):
        return float(len((node.response or "").split()))

register_scorer(Words())
```

evolab loads plugins from the entry-point group `evolab.plugins` and from `EVOLAB_PLUGINS=module[,module]`
(see evolab/engine/plugins.py); the CLI and the app call `load_plugins()` when they start.
"""
from evolab.engine.eliminator import INSTRUCTION, RESPONSE, SCORES, Rule, StepContext, Verdict, register_rule
from evolab.engine.operations import IN_BREADTH, IN_DEPTH, Operation, register_operation
from evolab.engine.plugins import (
                                   ENTRY_POINT_GROUP,
                                   ENV_VAR,
                                   Plugin,
                                   PluginError,
                                   load_plugins,
                                   loaded_plugins,
                                   plugin_errors,
)
from evolab.engine.scoring import Score, ScoreContext, Scorer, register_scorer
from evolab.schema import Node, RunConfig

__all__ = [
    "ENTRY_POINT_GROUP", "ENV_VAR", "IN_BREADTH", "IN_DEPTH", "INSTRUCTION", "RESPONSE", "SCORES", "Node",
    "Operation", "Plugin", "PluginError", "Rule", "RunConfig", "Score", "ScoreContext", "Scorer", "StepContext",
    "Verdict", "load_plugins", "loaded_plugins", "plugin_errors", "register_operation", "register_rule",
    "register_scorer",
]
