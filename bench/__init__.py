"""Speed benches, run from the repository root: ``python -m bench.rewards``, ``python -m bench.train_step``,
``python -m bench.eval`` (see bench/README.md)."""
