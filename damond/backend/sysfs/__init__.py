"""The real backend: DAMON through its sysfs tree (the tree's files, file access, layout,
probing, ownership, topology, a context's kdamond, measurement, online changes)."""
