"""bingo-host: turn a bare EC2 instance into a production music bingo host, and keep it that way."""

__version__ = "0.1.0"
