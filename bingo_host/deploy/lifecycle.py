"""`bingo-host deploy BUNDLE`: run a revision through the lifecycle the CodeDeploy agent runs.

What the agent (lib/instance_agent/plugins/codedeploy/*.rb, `codedeploy-local`) does for a
local-file revision, done the same way and in the same places (agent.Layout), so the agent and
this emulator share one history on a host: its event order (appspec.ORDER), its DownloadBundle
(archive.py), Install (installer.py) and script runs (scripts.py), and its environment, to which
bingo-host adds only BINGO_HOST_DEPLOY_DRIVER_PID (the deploy lock counts the deployment alive
while this process runs) and BINGO_HOST_BUNDLE(_SHA256) (the release record's provenance).
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import tempfile
import time
from pathlib import Path

from .. import logs
from ..digest import sha256_file
from ..ops.cleanup import Cleanup
from . import BundleError, DeployError, agent, appspec, freshness, integrity, record
from .agent import Layout
from .archive import bundle_type, extract
from .installer import check_users, install
from .releases import Paths
from .scripts import ScriptFailed, ScriptLog, run_event

log = logging.getLogger(__name__)


#: codedeploy-local's defaults (lib/aws/codedeploy/local/deployer.rb).
DEFAULT_GROUP_ID = "default-local-deployment-group"
DEFAULT_GROUP_NAME = "LocalFleet"
DEFAULT_APPLICATION_NAME = "music-bingo"
UNPACK_DIR = ".bingo-host-unpack"  # inside the deployment directory, until DownloadBundle


def new_deployment_id() -> str:
    """d- and 9 of A-Z0-9, like the ids CodeDeploy gives."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    return "d-" + "".join(secrets.choice(alphabet) for _ in range(9))


def _read_dir_file(path: str) -> str | None:
    """A deployment directory recorded in deployment-instructions (the agent chomps it)."""
    try:
        with open(path) as f:
            return f.read().rstrip("\n") or None
    except FileNotFoundError:
        return None


def _write_dir_file(path: str, deployment_dir: str) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(deployment_dir)  # no newline, as the agent writes it
    os.replace(tmp, path)


def _remove(path: str) -> None:
    """rm -rf, as the agent removes deployment directories."""
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.unlink(path)


def cleanup_old_archives(lay: Layout, retain: int) -> list[str]:
    """The agent's cleanup_old_archives: keep `retain` deployment directories in the group (this
    one included), never removing the last successful install's; the oldest (mtime) go."""
    try:
        others = [f"{lay.group_dir}/{e}" for e in os.listdir(lay.group_dir)]
    except FileNotFoundError:
        return []
    if lay.deployment_dir in others:
        others.remove(lay.deployment_dir)
    extra = len(others) - retain + 1
    if extra <= 0:
        return []
    last = _read_dir_file(lay.last_successful_install)
    if last in others:
        others.remove(last)
    oldest = sorted(others, key=lambda p: os.lstat(p).st_mtime)[:extra]
    for path in oldest:
        _remove(path)
    if oldest:
        log.info(f"[DownloadBundle] removed old deployment directories (max_revisions {retain}): "
                 f"{', '.join(os.path.basename(p) for p in oldest)}")
    return oldest


def _application_stop(lay: Layout, env: dict, script_log: ScriptLog) -> None:
    """ApplicationStop runs the scripts of the last deployment that passed Install (or this
    deployment's, if its archive is already there), as the agent's LastSuccessfulOrIgnore."""
    if os.path.exists(lay.archive):
        where = lay.deployment_dir
    else:
        where = _read_dir_file(lay.last_successful_install)
    if where is None:
        log.info(f"[ApplicationStop] no earlier deployment of group {lay.group_id} passed Install: "
                 "nothing to run")
        return
    archive = f"{where}/deployment-archive"
    if not os.path.isfile(f"{archive}/appspec.yml") and not os.path.isfile(f"{archive}/appspec.yaml"):
        raise ScriptFailed("ApplicationStop", (
            "The CodeDeploy agent did not find an AppSpec file within the unpacked revision directory "
            f'at revision-relative path "appspec.yml". The revision was unpacked to directory "{archive}", '
            f'and the AppSpec file was expected but not found at path "{archive}/appspec.yml".'))
    try:
        spec = appspec.load(Path(archive))
    except BundleError as exc:
        raise ScriptFailed("ApplicationStop", f"the appspec of the last successful install ({archive}) "
                                              f"is unusable: {exc}") from None
    if spec.hooks.get("ApplicationStop"):
        log.info(f"[ApplicationStop] from {archive}")
    run_event("ApplicationStop", spec, archive, env, script_log)


def _checked(source: str, unpack: str, application_name: str, group_name: str, deploy_cfg,
             app_root: str | None, allow_older: bool) -> appspec.AppSpec:
    """source unpacked into unpack and checked before anything runs: its appspec and the users
    it names, and with deploy_cfg its manifest, signature and age. Its appspec."""
    extract(source, unpack)  # a directory is copied through the archive's checks too
    spec = appspec.load(Path(unpack))
    check_users(spec)
    if deploy_cfg is not None:
        revision = integrity.verify(unpack, deploy_cfg, application_name, group_name)
        if app_root is not None:
            freshness.check(revision, Paths(app_root), consume=False, allow_older=allow_older)
    return spec


def dry_run(bundle: str, application_name: str = DEFAULT_APPLICATION_NAME,
            group_name: str = DEFAULT_GROUP_NAME, deploy_cfg=None, app_root: str | None = None,
            allow_older: bool = False) -> str:
    """What deploy would do: the same checks of the revision, unpacked into a temporary
    directory (not the agent's deployment root); no script runs, nothing else changes."""
    source = os.path.abspath(bundle)
    if not os.path.exists(source):
        raise BundleError(f"{bundle}: no such file or directory")
    kind = "directory" if os.path.isdir(source) else bundle_type(source)
    with tempfile.TemporaryDirectory(prefix="bingo-host-deploy-dry-run-") as tmp:
        spec = _checked(source, f"{tmp}/revision", application_name, group_name, deploy_cfg,
                        app_root, allow_older)
    checked = "appspec, manifest and signature check" if deploy_cfg is not None else "appspec checks"
    events = ", ".join(e for e in spec.hooks if spec.hooks[e]) or "none"
    return (f"deploy: would deploy {bundle} ({kind}; its {checked} out): its hooks for "
            f"{events} would run and {len(spec.files)} file mapping(s) be installed")


def deploy(bundle: str, deployment_id: str | None = None,
           application_name: str = DEFAULT_APPLICATION_NAME, group_name: str = DEFAULT_GROUP_NAME,
           group_id: str = DEFAULT_GROUP_ID, deploy_cfg=None, app_root: str | None = None,
           allow_older: bool = False) -> str:
    """Deploy a revision (a directory, or a zip, tar.gz or tar file) the way the agent would;
    the deployment id. With deploy_cfg (the host's `deploy` settings) the revision's manifest and
    signature (for application_name and group_name) are checked before any of its scripts runs,
    which the agent cannot do, and with app_root (the host's app.root) that a signed revision is
    not older than the serving one (allow_older: deploy it anyway, freshness.py)."""
    deployment_id = deployment_id or new_deployment_id()
    logs.set_fields(DEPLOYMENT_ID=deployment_id)  # the journal's entries of this run carry it
    source = os.path.abspath(bundle)
    if not os.path.exists(source):
        raise BundleError(f"{bundle}: no such file or directory")
    is_dir = os.path.isdir(source)
    kind = "directory" if is_dir else bundle_type(source)
    lay = Layout(agent.root_dir(agent.CONFIG), group_id, deployment_id)
    retain = agent.max_revisions(agent.CONFIG)

    # Unpacked and checked before anything runs: a bad revision changes nothing.
    unpack = f"{lay.deployment_dir}/{UNPACK_DIR}"
    with Cleanup() as undo:
        for path in (lay.root, lay.group_dir, lay.deployment_dir):
            if not os.path.exists(path):
                os.makedirs(path)
                undo.register(shutil.rmtree, path, ignore_errors=True)
        _remove(unpack)
        undo.register(_remove, unpack)
        spec = _checked(source, unpack, application_name, group_name, deploy_cfg, app_root, allow_older)
        sha256 = None if is_dir else sha256_file(source)

    env = dict(os.environ)
    for stale in ("BINGO_HOST_BUNDLE_DIR", "BINGO_HOST_BUNDLE_SHA256"):
        env.pop(stale, None)
    env.update(DEPLOYMENT_ID=deployment_id, APPLICATION_NAME=application_name,
               DEPLOYMENT_GROUP_NAME=group_name, DEPLOYMENT_GROUP_ID=group_id,
               BINGO_HOST_DEPLOY_DRIVER_PID=str(os.getpid()), BINGO_HOST_BUNDLE=source)
    if sha256:
        env["BINGO_HOST_BUNDLE_SHA256"] = sha256
    log.info(f"deploy: {deployment_id} from {bundle} ({kind}) in {lay.deployment_dir}")
    script_log = ScriptLog(lay.script_log)
    start = time.monotonic()
    event = "ApplicationStop"
    try:
        _application_stop(lay, env, script_log)

        event = "DownloadBundle"
        cleanup_old_archives(lay, retain)
        _remove(lay.archive)
        if not is_dir:
            _remove(f"{lay.deployment_dir}/bundle.tar")
            os.symlink(source, f"{lay.deployment_dir}/bundle.tar")  # handle_local_file
        os.rename(unpack, lay.archive)
        os.makedirs(lay.instructions, exist_ok=True)
        _write_dir_file(lay.most_recent_install, lay.deployment_dir)
        log.info(f"[DownloadBundle] {kind} revision unpacked in {lay.archive}")
        archive = lay.archive

        event = "BeforeInstall"
        run_event(event, spec, archive, env, script_log)
        event = "Install"
        install(spec, archive, lay)
        _write_dir_file(lay.last_successful_install, lay.deployment_dir)
        for event in ("AfterInstall", "ApplicationStart", "ValidateService"):
            run_event(event, spec, archive, env, script_log)
    except (DeployError, OSError) as exc:
        record.fail(deployment_id, str(exc))  # a killed hook (timeout) could not say so itself
        log.info(f"deploy: see the deployment log at {lay.script_log} for more details")
        raise DeployError(f"deployment {deployment_id} failed in {event}: {exc}") from None
    finally:
        script_log.close()
        _remove(unpack)
    log.info(f"deploy: {deployment_id} succeeded in {time.monotonic() - start:.1f} s")
    return deployment_id
