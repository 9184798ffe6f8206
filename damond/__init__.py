"""damond: a user-space controller for DAMON-based tiered memory."""

__version__ = "0.1.0"
