"""A converge Context for unit tests: the default config on Debian 12, a 512 MiB two-CPU host
(what it logs is read through caplog)."""

from bingo_host.config import Config
from bingo_host.context import Context
from bingo_host.facts import platforms
from bingo_host.facts.host import HostFacts
from bingo_host.resolve import resolve


def context(dry_run=False):
    platform, facts = platforms.PLATFORMS["debian12"], HostFacts(512 * 1024**2, 2)
    return Context(resolve(Config(), platform, facts), platform, facts, dry_run=dry_run)
