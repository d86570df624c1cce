"""Provider invoices: their formats (`parsers`) and their ingestion (`ingest`)."""
