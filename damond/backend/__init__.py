"""Backends: where DAMON lives (the kernel's sysfs tree, or a simulated machine)."""
