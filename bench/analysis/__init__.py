"""Numbers from records: statistics, cells, decision map, claims, the CI gate, references. Never imports bench.run or
torch."""
