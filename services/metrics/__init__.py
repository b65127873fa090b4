"""Metrics: KPIs per centre and window."""
