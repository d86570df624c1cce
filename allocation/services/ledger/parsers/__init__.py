"""One parser per source format; each yields ParsedRecord or RejectedRecord."""
