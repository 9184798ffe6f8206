"""Prometheus metrics: what is exported, how it is rendered and served, and health."""
