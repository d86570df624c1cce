"""Forms of the allocation pages, one module per area: ledger, mapping."""
