"""The simulated backend: a tiered-memory machine with DAMON-like monitoring, in-process."""
