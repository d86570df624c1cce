"""Pages of the allocation app, one module per area: ledger, org, rating, mapping, runs."""
