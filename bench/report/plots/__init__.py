"""The report's figures (matplotlib's object API on the Agg canvas)."""
