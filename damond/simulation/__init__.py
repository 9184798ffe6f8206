"""``damond simulate``: the daemon's loops against the simulated machine in virtual time."""
