"""Imported first by the cell fork server (``harness.PRELOAD``): reads the checkout's git state while the code is being
imported, so every cell forked later reports the code it actually runs; and makes the fork server, and so every cell
forked from it, ignore Ctrl-C. A terminal sends Ctrl-C to the whole process group: without this a fork server still
importing torch would die of it with a traceback on the terminal, and a cell would die with a record of a failure.
The process that started a cell ends it instead (``harness.run_cell``), and records nothing for it."""

import signal

from bench.run.meters import git_info

signal.signal(signal.SIGINT, signal.SIG_IGN)
git_info()
