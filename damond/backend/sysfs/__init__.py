"""The real backend: DAMON through its sysfs tree (file access, layout, probing,
ownership, topology, measurement)."""
