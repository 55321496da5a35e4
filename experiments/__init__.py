"""Reproductions of the seeds' experiments: scripts that run several configs and tabulate them."""
