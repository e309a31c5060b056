"""adaptbench: which adaptation strategy for my data, my budget and my hardware?

A *cell* is (task, method, label budget, seed, hyperparameters); the harness runs one cell and writes exactly
one *record*. See README.md for the user's view and docs in ../shared/docs for the design.
"""

__version__ = "0.1.0"
