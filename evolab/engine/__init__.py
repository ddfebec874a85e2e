"""The engine: operations, the evolver and responder, the eliminator's rules, scorers, a run and its batch mode."""
# The built-in rules written as plugins register themselves on import: importing any part of the engine
# puts them in the cascade, as the paper's rules are.
from evolab.engine import drift_rules  # noqa: F401
