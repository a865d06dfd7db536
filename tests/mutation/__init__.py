"""Mutation testing of the critical modules: `make mutation` runs tests/mutation/run.py (see its docstring)."""
