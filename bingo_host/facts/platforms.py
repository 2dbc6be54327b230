"""Everything that differs between the supported distributions, in one table.

Code asks the platform for a value; it never branches on the distribution's name.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError


@dataclass(frozen=True)
class Platform:
    name: str
    description: str
    os_release_ids: tuple[tuple[str, str], ...]  # (ID, VERSION_ID) pairs that identify it
    install_cmd: tuple[str, ...]  # argv prefix; package names are appended
    query_installed_cmd: tuple[str, ...]  # prints one installed package name per line
    packages: tuple[str, ...]  # nginx, MariaDB server, venv support, app build dependencies,
                               # setpriv (Debian's util-linux is essential: always there)
    mariadb_server_packages: tuple[str, ...]  # left out in external-database mode
    python: str  # interpreter for the uWSGI and app virtualenvs (>= 3.10)
    nologin: str  # the shell of the dedicated app user (it never logs in)
    nginx_user: str
    nginx_group: str
    nginx_conf_d: str
    nginx_default_site: str | None  # a symlink to remove so our site is the default server
    nginx_main_conf: str | None  # owned outright where the distro's has a server block in it
    mariadb_service: str
    mariadb_conf_d: str
    mariadb_socket: str
    mariadb_user: str
    certbot: str  # where enable-https installs certbot
    certbot_packages: tuple[str, ...]  # distribution packages enable-https installs for certbot
    certbot_venv: str | None  # a virtualenv enable-https creates for certbot (None: distro packages)
    certbot_pip: tuple[str, ...]  # what goes into certbot_venv (certbot and its nginx plugin)
    certbot_distro_timer: str | None  # the package's own renewal timer, disabled: ours renews
    block_service_starts: bool  # packages start their services on install (Debian): hold them off
    # Security patches (`bingo-host patch`): what it installs, refreshes, upgrades, asks.
    patch_packages: tuple[str, ...]
    patch_refresh_cmd: tuple[str, ...] | None  # package lists fetched before upgrading
    patch_upgrade_cmd: tuple[str, ...]  # security updates only; "{release}": patches.release
    patch_config: tuple[tuple[str, str], ...]  # (template, path): the tools' config we own
    needs_restart_cmd: tuple[str, ...]  # lists the services running replaced code, "x.service"
    reboot_check_cmd: tuple[str, ...] | None  # exit 1: a reboot is needed (we write the marker)
    reboot_marker: str  # exists (in /run: a reboot clears it) while a reboot is needed
    firewall_packages: tuple[str, ...]  # the firewall step's nft (firewall.enabled)
    nft: str
    cloudwatch_agent_package: str | None  # None: the distribution does not package it
    cloudwatch_agent_skip_reason: str | None


PLATFORMS: dict[str, Platform] = {
    p.name: p
    for p in (
        Platform(
            name="amzn2023",
            description="Amazon Linux 2023",
            os_release_ids=(("amzn", "2023"),),
            install_cmd=("dnf", "install", "-y", "--setopt=install_weak_deps=False"),
            query_installed_cmd=("rpm", "-qa", "--queryformat", "%{NAME}\\n"),
            packages=(
                "nginx", "python3.11", "python3.11-pip", "python3.11-devel",
                "gcc", "mariadb-connector-c-devel", "pkgconf-pkg-config",
                # mariadb-dump and mariadb for `backup`/`restore`, external databases too; a
                # restore needs the client's --sandbox: mariadb105 >= 10.5.25 (refused before)
                "mariadb105",
                "util-linux",  # setpriv, which drops to the build account (util-linux-core lacks it)
            ),
            mariadb_server_packages=("mariadb105-server",),
            python="/usr/bin/python3.11",
            nologin="/sbin/nologin",
            nginx_user="nginx",
            nginx_group="nginx",
            nginx_conf_d="/etc/nginx/conf.d",
            nginx_default_site=None,
            nginx_main_conf="/etc/nginx/nginx.conf",
            mariadb_service="mariadb",
            mariadb_conf_d="/etc/my.cnf.d",
            mariadb_socket="/var/lib/mysql/mysql.sock",
            mariadb_user="mysql",
            certbot="/opt/bingo-host/certbot/bin/certbot",
            certbot_packages=(),  # python3.11 is already in `packages`
            certbot_venv="/opt/bingo-host/certbot",  # AL2023 ships no certbot-nginx package
            certbot_pip=("certbot", "certbot-nginx"),
            certbot_distro_timer=None,
            block_service_starts=False,
            patch_packages=("dnf-plugins-core",),  # dnf needs-restarting
            patch_refresh_cmd=None,  # dnf refreshes expired metadata itself
            # The repositories are versioned: without --releasever, dnf sees only the release
            # the AMI is locked to, which never gains an update.
            patch_upgrade_cmd=("dnf", "upgrade", "--security", "-y", "--releasever={release}"),
            patch_config=(),
            needs_restart_cmd=("dnf", "needs-restarting", "--services"),
            reboot_check_cmd=("dnf", "needs-restarting", "--reboothint"),
            reboot_marker="/run/bingo-host/reboot-required",
            firewall_packages=("nftables",),
            nft="/usr/sbin/nft",
            cloudwatch_agent_package="amazon-cloudwatch-agent",
            cloudwatch_agent_skip_reason=None,
        ),
        Platform(
            name="debian12",
            description="Debian 12 (bookworm)",
            os_release_ids=(("debian", "12"),),
            install_cmd=("apt-get", "install", "-y", "-q", "--no-install-recommends"),
            query_installed_cmd=("dpkg-query", "-W", "-f", "${Package} ${db:Status-Status}\\n"),
            packages=(
                "nginx", "python3", "python3-venv", "python3-dev", "build-essential",
                # mariadb-client: a restore needs its --sandbox, 10.11.8 or later (bookworm
                # updates ship 10.11.x past it; an older one is refused before loading)
                "libmariadb-dev", "pkg-config", "mariadb-client",
            ),
            mariadb_server_packages=("mariadb-server",),
            python="/usr/bin/python3",
            nologin="/usr/sbin/nologin",
            nginx_user="www-data",
            nginx_group="www-data",
            nginx_conf_d="/etc/nginx/conf.d",
            nginx_default_site="/etc/nginx/sites-enabled/default",
            nginx_main_conf=None,
            mariadb_service="mariadb",
            mariadb_conf_d="/etc/mysql/mariadb.conf.d",
            mariadb_socket="/run/mysqld/mysqld.sock",
            mariadb_user="mysql",
            certbot="/usr/bin/certbot",
            certbot_packages=("certbot", "python3-certbot-nginx"),
            certbot_venv=None,
            certbot_pip=(),
            certbot_distro_timer="certbot.timer",
            block_service_starts=True,
            patch_packages=("unattended-upgrades", "needrestart"),
            patch_refresh_cmd=("apt-get", "update", "-q"),
            patch_upgrade_cmd=("unattended-upgrade", "-v"),  # origins: our apt.conf.d file
            patch_config=(("unattended-upgrades.conf", "/etc/apt/apt.conf.d/52bingo-host-security"),
                          ("needrestart.conf", "/etc/needrestart/conf.d/bingo-host.conf")),
            needs_restart_cmd=("needrestart", "-b", "-r", "l"),
            reboot_check_cmd=None,  # package scripts create the marker
            reboot_marker="/run/reboot-required",
            firewall_packages=("nftables",),
            nft="/usr/sbin/nft",
            cloudwatch_agent_package=None,
            cloudwatch_agent_skip_reason="Debian 12 has no amazon-cloudwatch-agent package in its "
                                         "repositories (AWS ships only a .deb to download by hand)",
        ),
    )
}


def parse_os_release(text: str) -> dict[str, str]:
    values = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip().strip('"').strip("'")
    return values


def detect(os_release: Path = Path("/etc/os-release")) -> Platform:
    """The platform this host runs, from /etc/os-release."""
    try:
        info = parse_os_release(os_release.read_text())
    except OSError as exc:
        raise ConfigError("platform", f"cannot detect: {exc.strerror} reading {os_release}") from exc
    ident = (info.get("ID", ""), info.get("VERSION_ID", "").split(".")[0])
    for platform in PLATFORMS.values():
        if ident in platform.os_release_ids:
            return platform
    raise ConfigError(
        "platform",
        f"unsupported distribution {info.get('PRETTY_NAME', ident)!r}; "
        f"set platform to one of {', '.join(PLATFORMS)}",
    )


def get(name: str) -> Platform:
    return detect() if name == "auto" else PLATFORMS[name]
