"""Exceptions that carry the CLI exit status, so every command maps failures the same way."""


class BingoHostError(Exception):
    """A failure the operator can act on; exit status 1."""

    exit_code = 1


class ConfigError(BingoHostError):
    """Invalid input: names the offending field and why; exit status 2, nothing changed."""

    exit_code = 2

    def __init__(self, field: str, reason: str):
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


class CommandError(BingoHostError):
    """A command exited with a status it was not allowed to."""

    def __init__(self, logged_cmd: str, returncode: int, stderr: str):
        self.returncode = returncode
        self.stderr = stderr
        tail = stderr.strip().splitlines()[-5:]
        detail = ("\n  " + "\n  ".join(tail)) if tail else ""
        super().__init__(f"command failed (exit {returncode}): {logged_cmd}{detail}")


class ConfigErrors(ConfigError):
    """Every error a config file has, read in one pass: one line each (the CLI prints each as
    its own line), so an operator fixes them all before the next run. Its field and reason are
    the first error's."""

    def __init__(self, errors: list[ConfigError]):
        self.errors = list(errors)
        super().__init__(errors[0].field, errors[0].reason)

    def __str__(self) -> str:
        return "\n".join(str(e) for e in self.errors)


def raise_all(errors: list[ConfigError]) -> None:
    """Nothing for no errors, the error itself for one, ConfigErrors for more."""
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise ConfigErrors(errors)
