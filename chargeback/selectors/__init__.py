"""Reads of the finance side, one module per area: dashboard (and, next, statements, disputes)."""
