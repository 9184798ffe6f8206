"""The control layer: pure decisions from measurements to quotas (no I/O, no asyncio)."""
