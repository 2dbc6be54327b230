"""The checks of where secrets come from ('generate', ssm:NAME, secretsmanager:ID, or a literal
the config's reader may see) and of the SMTP login that goes with one. An error quotes a
reference but never a literal: it says how long it is."""

from __future__ import annotations

import re

from .errors import ConfigError
from .fields import pattern, shown, string
from .secrets import reference_problem

PASSWORD_CHARS = re.compile(r"[A-Za-z0-9!#$&()*+,./:<=>?@\[\]^_{|}~-]{12,128}")
# What `config check` prints for a literal password: refused as a value (not silently made the
# password), so a printed config used as it is says where the password must go back in.
MASK = "*****"
REFERENCES = ("ssm:", "secretsmanager:")


def masked(value: str) -> str:
    """A value as an error shows it: a reference quoted, a literal by its length only."""
    return shown(value) if value.startswith(REFERENCES) else f"a literal of {len(value)} characters"


def _string(value, path, allowed: str) -> str:
    """fields.string, but a literal on several lines is not quoted."""
    if isinstance(value, str) and any(c in value for c in "\r\n\0"):
        raise ConfigError(path, f"must be a single line (got {masked(value)})")
    return string(value, path, allowed)


def password(value, path) -> str:
    """generate | ssm:NAME | secretsmanager:ID | a literal (discouraged)."""
    value = _string(value, path, password.allowed)
    if value == "generate":
        return value
    if value.startswith(REFERENCES):
        problem = reference_problem(value)
        if problem:
            raise ConfigError(path, f"{problem} (got {shown(value)})")
        return value
    if value == MASK:
        raise ConfigError(path, f"{MASK!r} is how `config check` masks a literal password: write the "
                                "password here, or better 'ssm:NAME' or 'secretsmanager:ID'")
    if not PASSWORD_CHARS.fullmatch(value):
        raise ConfigError(
            path, "a literal password needs 12 to 128 characters from letters, digits and "
                  "!#$&()*+,./:<=>?@[]^_{|}~- (no quotes, backslash, ';', '%' or spaces); "
                  f"prefer 'generate', 'ssm:NAME' or 'secretsmanager:ID' (got {masked(value)})")
    return value


password.allowed = ("'generate', ssm:NAME, secretsmanager:ID or a literal password (12 to 128 "
                    "characters; discouraged)")


def mail_password(value, path) -> str:
    """ssm:NAME | secretsmanager:ID | a literal (discouraged): the mail service issues it, so
    there is nothing to generate."""
    if value == "generate":
        raise ConfigError(path, "cannot be 'generate' (the mail service issues the password): use "
                                "'ssm:NAME' or 'secretsmanager:ID'")
    return password(value, path)


mail_password.allowed = ("ssm:NAME, secretsmanager:ID or a literal password (12 to 128 "
                         "characters; discouraged)")


# An SMTP login: SES's is an access key id, other services' an e-mail address.
smtp_username = pattern(r"[A-Za-z0-9@._+=-]{1,128}",
                        "1 to 128 letters, digits and @._+=- (no spaces, quotes or '%')")


def secret_source(value, path) -> str:
    """generate | ssm:NAME | secretsmanager:ID: never the secret itself."""
    value = _string(value, path, secret_source.allowed)
    if value != "generate" and not value.startswith(REFERENCES):
        raise ConfigError(path, "must be 'generate', 'ssm:NAME' or 'secretsmanager:ID' (the value "
                                f"itself never goes into the config file; got {masked(value)})")
    return password(value, path)


secret_source.allowed = "'generate', ssm:NAME or secretsmanager:ID"


def secret_reference(value, path) -> str:
    """ssm:NAME | secretsmanager:ID: where a secret lives, for secrets bingo-host only reads."""
    value = _string(value, path, secret_reference.allowed)
    if not value.startswith(REFERENCES):
        raise ConfigError(path, "must be 'ssm:NAME' or 'secretsmanager:ID' (the secret itself "
                                f"never goes into the config file; got {masked(value)})")
    return password(value, path)


secret_reference.allowed = "ssm:NAME or secretsmanager:ID"
