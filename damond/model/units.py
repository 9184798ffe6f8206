"""Units every layer shares: byte multiples and the basis-point scale."""

MiB = 1 << 20
GiB = 1 << 30

BP_SCALE = 10_000
"""Basis points in a whole: a ratio of 1 is 10000 bp."""
