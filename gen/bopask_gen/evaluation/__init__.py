"""Scoring BOP-ASK answers: the paper's metrics (metrics) and ``bopask-gen eval`` (evaluate)."""
