"""Everything that executes: one cell (harness, cell, loop, flops, meters) and many (grid, executors, locks,
progress)."""
