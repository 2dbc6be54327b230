"""The last revision that passed ValidateService, kept on the data volume (deploy.keep_release),
so that a replacement instance, which adopts the volume, serves it at bootstrap with no pipeline
run: CodeDeploy deploys to new instances only for Auto Scaling targets, and its "last successful
deployment" (GetDeploymentGroup) cannot be stood in for offline (moto 5.2.6 answers it empty and
never completes a deployment). The volume is the one place that outlives the instance and that the
instance may write: it never writes the deployment bucket, whose objects run as root.

    <volume.mountpoint>/bingo-host/release/          0700 root
        revision-<sha256>                            the bundle file, as deployed (0600)
        revision.json                                which one, and for which group (0600)

revision.json is replaced last (atomically), so it always names a complete file. What bootstrap
deploys from here goes through lifecycle.deploy like any revision: its manifest and signature are
checked as deploy.require_signature says, for the application and group recorded with it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat

from ..digest import sha256_file
from ..facts.host import is_legacy_datadir
from ..state import read_json, write_json
from .agent import Layout, root_dir
from . import DeployError
from .releases import PLACEHOLDER, Paths, current_name

log = logging.getLogger(__name__)

SUBDIR = "bingo-host/release"
RECORD = "revision.json"


def on_volume(cfg, subdir: str) -> str | None:
    """subdir's path on the data volume, or None when there is none to keep things on (an
    external database, the volume not mounted, or a legacy volume whose root is the datadir)."""
    mp = cfg.volume.mountpoint
    if not cfg.database.local or not os.path.ismount(mp) or is_legacy_datadir(mp):
        return None
    return f"{mp}/{subdir}"


def check_owned(directory: str) -> None:
    """directory and its parent, where they exist: root's own directories, writable by root only,
    or DeployError. The volume's root belongs to MariaDB's account, which could otherwise put a
    tree of its own (a revision, a certbot renewal hook root would run) or a symbolic link where
    root reads and writes."""
    for path in (os.path.dirname(directory), directory):
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            continue
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != 0 or st.st_mode & 0o022:
            raise DeployError(f"{path}: not a directory of root's that only root may write (uid "
                              f"{st.st_uid}, mode {stat.S_IMODE(st.st_mode):04o}): not used; move it away")


def make_owned(directory: str) -> None:
    """directory (0700) and its parent (0755), root's, made where missing; check_owned."""
    check_owned(directory)
    for path, mode in ((os.path.dirname(directory), 0o755), (directory, 0o700)):
        os.makedirs(path, mode, exist_ok=True)
    check_owned(directory)
    os.chmod(directory, 0o700)


def where(cfg) -> str | None:
    """The kept revision's directory, or None when this host keeps none (deploy.keep_release off,
    or no data volume: on_volume)."""
    return on_volume(cfg, SUBDIR) if cfg.deploy.keep_release else None


def _copy(source: str, dest: str) -> str:
    """source copied to dest (0600, synced); the sha256 of what was copied."""
    h = hashlib.sha256()
    tmp = f"{dest}.tmp-{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        with open(source, "rb") as src, os.fdopen(fd, "wb") as out:
            for chunk in iter(lambda: src.read(1 << 20), b""):
                h.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, dest)
    except BaseException:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        raise
    return h.hexdigest()


def keep(directory: str, env) -> str:
    """Keep the revision of the deployment env names (it just passed ValidateService) in
    directory; what was done, in words. A directory revision (no bundle file) is not kept, and
    the older kept one is dropped: a replacement must not deploy a revision older than this."""
    lay = Layout(root_dir(), env["DEPLOYMENT_GROUP_ID"], env["DEPLOYMENT_ID"])
    bundle = f"{lay.deployment_dir}/bundle.tar"
    record_file = f"{directory}/{RECORD}"
    make_owned(directory)
    old = read_json(record_file) or {}
    if not os.path.isfile(bundle):
        if os.path.exists(record_file):
            os.unlink(record_file)
        return f"not kept: deployment {env['DEPLOYMENT_ID']} has no bundle file (a directory revision)"
    sha = sha256_file(bundle)
    name = f"revision-{sha}"
    if sha != old.get("sha256") or not os.path.isfile(f"{directory}/{name}"):
        copied = _copy(bundle, f"{directory}/{name}")
        if copied != sha:
            raise OSError(f"{bundle} changed while it was copied to {directory}")
    write_json(record_file, {
        "schema": 1, "file": name, "sha256": sha, "deployment_id": env["DEPLOYMENT_ID"],
        "application_name": env.get("APPLICATION_NAME"),
        "deployment_group": env.get("DEPLOYMENT_GROUP_NAME"),
        "deployment_group_id": env["DEPLOYMENT_GROUP_ID"],
        "bundle": {k: env.get(k) for k in ("BUNDLE_BUCKET", "BUNDLE_KEY", "BUNDLE_VERSION") if env.get(k)},
    }, mode=0o600)
    for entry in os.listdir(directory):
        if entry.startswith("revision-") and entry != name:
            os.unlink(f"{directory}/{entry}")
    return f"kept {name[:21]} on the data volume ({directory})"


def forget(directory: str) -> None:
    """No revision kept any more (keeping the newer one failed: the older must not be deployed)."""
    try:
        check_owned(directory)
        os.unlink(f"{directory}/{RECORD}")
    except (FileNotFoundError, DeployError):
        pass


def wanted(directory: str | None, app_root: str) -> tuple[dict | None, str]:
    """(the kept revision's record with its "path", or None; why, in words): bootstrap deploys
    the kept revision only when this host serves no release; DeployError when the kept file is
    not the one its record names (a host must not come up serving nothing unnoticed)."""
    if directory is None:
        return None, "no revision is kept (deploy.keep_release off or no data volume mounted)"
    serving = current_name(Paths(app_root))
    if serving not in (None, PLACEHOLDER):
        return None, f"serving release {serving}"
    check_owned(directory)
    kept = read_json(f"{directory}/{RECORD}")
    if not kept or not isinstance(kept.get("file"), str) or "/" in kept["file"]:
        return None, f"no revision is kept in {directory}"
    path = f"{directory}/{kept['file']}"
    if not os.path.isfile(path) or sha256_file(path) != kept.get("sha256"):
        raise DeployError(f"{path}: the kept revision is missing or does not match the sha256 in "
                          f"{directory}/{RECORD}; deploy a revision (the pipeline, or `bingo-host deploy`)")
    why = f"no release is served: deploying the kept revision of {kept['deployment_id']}"
    return {**kept, "path": path}, why
