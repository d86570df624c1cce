"""The finance side's pages, one module per area (home, dashboard, statements, disputes)."""
