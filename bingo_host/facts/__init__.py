"""Facts: read-only probes of the host (a command or a read, plus a pure parser).

Nothing here changes the host, and nothing here imports ops/, converge/ or deploy/: operations
read facts, never the other way round.
"""
