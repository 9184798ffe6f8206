"""DAMON sysfs plumbing: file access, tree layout, probing, ownership, topology."""
