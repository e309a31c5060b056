"""The vocabulary every other part speaks: imports nothing outside bench.core, no heavy library at import."""
