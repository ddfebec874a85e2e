"""The engine: operations, the evolver and responder, the eliminator's rules, scorers, a run and its batch mode."""
