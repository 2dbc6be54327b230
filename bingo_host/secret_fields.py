"""The checks of where secrets come from ('generate', ssm:NAME, secretsmanager:ID, or a literal
the config's reader may see) and of the SMTP login that goes with one."""

from __future__ import annotations

import re

from .errors import ConfigError
from .fields import pattern, string
from .secrets import reference_problem

PASSWORD_CHARS = re.compile(r"[A-Za-z0-9!#$&()*+,./:<=>?@\[\]^_{|}~-]{12,128}")


def password(value, path) -> str:
    """generate | ssm:NAME | secretsmanager:ID | a literal (discouraged)."""
    value = string(value, path)
    if value == "generate":
        return value
    if value.startswith(("ssm:", "secretsmanager:")):
        problem = reference_problem(value)
        if problem:
            raise ConfigError(path, problem)
        return value
    if not PASSWORD_CHARS.fullmatch(value):
        raise ConfigError(
            path, "a literal password needs 12 to 128 characters from letters, digits and "
                  "!#$&()*+,./:<=>?@[]^_{|}~- (no quotes, backslash, ';', '%' or spaces); "
                  "prefer 'generate', 'ssm:NAME' or 'secretsmanager:ID'")
    return value


def mail_password(value, path) -> str:
    """ssm:NAME | secretsmanager:ID | a literal (discouraged): the mail service issues it, so
    there is nothing to generate."""
    if value == "generate":
        raise ConfigError(path, "cannot be 'generate' (the mail service issues the password): use "
                                "'ssm:NAME' or 'secretsmanager:ID'")
    return password(value, path)


# An SMTP login: SES's is an access key id, other services' an e-mail address.
smtp_username = pattern(r"[A-Za-z0-9@._+=-]{1,128}",
                        "1 to 128 letters, digits and @._+=- (no spaces, quotes or '%')")


def secret_source(value, path) -> str:
    """generate | ssm:NAME | secretsmanager:ID: never the secret itself."""
    value = string(value, path)
    if value != "generate" and not value.startswith(("ssm:", "secretsmanager:")):
        raise ConfigError(path, "must be 'generate', 'ssm:NAME' or 'secretsmanager:ID' (the value "
                                "itself never goes into the config file)")
    return password(value, path)


def secret_reference(value, path) -> str:
    """ssm:NAME | secretsmanager:ID: where a secret lives, for secrets bingo-host only reads."""
    value = string(value, path)
    if not value.startswith(("ssm:", "secretsmanager:")):
        raise ConfigError(path, "must be 'ssm:NAME' or 'secretsmanager:ID' (the secret itself "
                                "never goes into the config file)")
    return password(value, path)
