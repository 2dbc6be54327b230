"""Bootstrap steps, one module per concern: NAME and converge(ctx), which reads the host and
routes every change through ctx.change (see context.py)."""
