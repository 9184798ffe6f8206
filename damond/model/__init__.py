"""The shared vocabulary at the bottom of the package: DAMON's objects, measurements,
units and errors. Nothing here imports any other part of damond."""
