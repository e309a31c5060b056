"""adaptbench: which adaptation strategy for my data, my budget and my hardware?

A *cell* is (task, method, label budget, seed, hyperparameters); the harness runs one cell and writes exactly
one *record*. See README.md for the user's view and docs in ../shared/docs for the design.
"""

__version__ = "0.1.0"

import logging as _logging

# bitsandbytes (imported by peft) warns at import on every CPU with AVX-512 BF16 that its optional `kernels` package is
# missing, then uses its own CPU kernel: a library's note, not an error of ours, printed once per process (every grid
# line started with it). Its real errors still show: only this module's warnings are silenced.
_logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(_logging.ERROR)
