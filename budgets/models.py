"""Budgets, realtime quotas, alerts and forecasts (models arrive with budgets)."""
