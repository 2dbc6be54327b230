"""Bootstrap steps: each module has NAME and converge(ctx); see bingo_host/converge.py."""
