"""Imported by the cell fork server (``harness.PRELOAD``): reads the checkout's git state while the code is being
imported, so every cell forked later reports the code it actually runs."""

from bench.run.meters import git_info

git_info()
