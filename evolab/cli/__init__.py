"""`python -m evolab`: the headless CLI, a thin layer over the engine and the store."""
