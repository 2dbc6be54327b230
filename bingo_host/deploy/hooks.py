"""`bingo-host hook EVENT`: what each CodeDeploy lifecycle event does on this host.

    BeforeInstall    upgrade bingo-host from the bundle's wheel if it is newer (upgrade.py),
                     take the deploy lock (state.py), preflight, empty the staging directory
    AfterInstall     build releases/<deployment-id> from staging (venv reused or built);
                     the serving release is not touched
    ApplicationStart switch `current` atomically, graceful uWSGI reload, wait until every uWSGI
                     process serves the new release (else switch back), prune old releases
    ValidateService  the index and app.health_path through nginx (probe.py: 200 only when the
                     app reaches its database), retried until a deadline; on failure switch
                     back to the previous release and fail
    ApplicationStop  nothing: the old release keeps serving until ApplicationStart switches

The hooks run under the CodeDeploy agent or `bingo-host deploy`; both unpack the revision where
agent.py says, and the hooks find it only there.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import time
from pathlib import Path

from .. import __version__, layout, subp
from ..converge.engine import log_to_journal, make_context
from ..ops.lock import host_lock
from ..ops import files
from ..errors import BingoHostError
from . import BundleError, DeployError, agent, appspec, state, upgrade
from .releases import PLACEHOLDER, Paths, current_name, prune, read_record, update_record

MIN_FREE_APP_MIB = 400  # a new virtualenv plus a release
MIN_FREE_ROOT_MIB = 100
VALIDATE_TIMEOUT = 60.0  # $BINGO_HOST_VALIDATE_TIMEOUT overrides
LOAD_TIMEOUT = 90.0  # $BINGO_HOST_LOAD_TIMEOUT: uWSGI loading a release (scan 3 s + reload mercy)


def _float_env(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


# -- switching and reloading --

def _uwsgi_processes(root: str, uid: int) -> list[tuple[int, str]]:
    """(pid, cwd) of the app's uWSGI processes (master and workers run as the app user, in the
    release directory they loaded: `chdir` resolves the `current` link when they start)."""
    import psutil

    prefix = os.path.realpath(root) + "/"
    out = []
    for p in psutil.process_iter(["pid", "uids", "cmdline"]):
        try:
            if p.info["uids"] is None or p.info["uids"].real != uid:
                continue
            if "uwsgi" not in " ".join(p.info["cmdline"] or ()):
                continue
            cwd = p.cwd()
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        if cwd.startswith(prefix):
            out.append((p.info["pid"], cwd))
    return out


def _bump_mtime(path: str, before: float | None) -> None:
    """Touch path so its whole-second mtime moves past what the emperor last saw."""
    wanted = max(int(time.time()), int(before or 0) + 1)
    os.utime(path, (wanted, wanted))


def wait_loaded(ctx, name: str, timeout: float, echo=print) -> None:
    """Until every uWSGI process of the app runs in release `name` (none for the placeholder)."""
    import pwd

    paths = Paths(ctx.cfg.app.root)
    uid = pwd.getpwnam(ctx.cfg.app.user).pw_uid
    want = None if name == PLACEHOLDER else os.path.realpath(paths.release(name))
    deadline = time.monotonic() + timeout
    start = time.monotonic()
    procs: list = []
    while time.monotonic() < deadline:
        procs = _uwsgi_processes(ctx.cfg.app.root, uid)
        if want is None and not procs:
            return
        if want is not None and len(procs) >= 2 and all(cwd == want for _, cwd in procs):
            echo(f"uwsgi: {len(procs)} processes serving {name} ({time.monotonic() - start:.1f} s)")
            return
        time.sleep(0.3)
    where = sorted({os.path.basename(cwd) for _, cwd in procs}) or ["no process"]
    tail = subp.run(["journalctl", "-u", layout.UWSGI_SERVICE, "-n", "15", "--no-pager", "-o", "cat"],
                    rcs=range(256), timeout=30).stdout.strip()
    raise DeployError(f"uWSGI did not load {name} within {timeout:.0f} s "
                      f"(its processes run in: {', '.join(where)})\n{tail}")


def activate(ctx, name: str, echo=print, timeout: float | None = None) -> None:
    """Point `current` at releases/<name> (or the placeholder), reload the app gracefully, and
    wait until uWSGI serves it. The vassal file exists only while a release is current."""
    paths = Paths(ctx.cfg.app.root)
    files.symlink(paths.current, PLACEHOLDER if name == PLACEHOLDER else f"releases/{name}")
    echo(f"switch: {paths.current} -> {name}")
    vassal = ctx.managed("uwsgi-vassal.ini")
    if name == PLACEHOLDER:
        ctx.remove_file(vassal.path)
    else:
        before = os.stat(vassal.path).st_mtime if os.path.exists(vassal.path) else None
        ctx.ensure_file(ctx.managed("health_wsgi.py"))  # a newer bingo-host may bring a newer one
        ctx.ensure_file(vassal)
        _bump_mtime(vassal.path, before)
        if before is None:
            # No vassal ran, so nothing is served by uWSGI: restarting the emperor costs nothing,
            # and it must watch the vassals directory as a directory (an emperor started before
            # the directory existed watches the path as a single file and never spawns vassals).
            from ..ops import service

            service.systemctl("restart", f"{layout.UWSGI_SERVICE}.service")
            echo(f"uwsgi: installed {vassal.path}; emperor restarted (no app was running)")
        else:
            echo(f"uwsgi: graceful reload (touched {vassal.path})")
    wait_loaded(ctx, name, timeout if timeout is not None else _float_env("BINGO_HOST_LOAD_TIMEOUT",
                                                                          LOAD_TIMEOUT), echo)


def switch_with_fallback(ctx, name: str, previous: str | None, echo=print) -> None:
    """activate(name); if uWSGI cannot load it, put `previous` back and fail."""
    try:
        activate(ctx, name, echo)
    except BingoHostError as exc:
        if previous:
            echo(f"switch: {name} did not load; switching back to {previous}")
            try:
                activate(ctx, previous, echo)
            except BingoHostError as again:
                raise DeployError(f"{exc}\nand switching back to {previous} failed too: {again}") from None
        raise


# -- health through nginx --

def check_http(ctx, deadline_s: float | None = None, echo=print) -> None:
    """The static index and the health check through nginx (probe.py's rule: 200 for both),
    retried until the deadline."""
    from ..facts import probe

    tls_domain = ctx.facts.tls_domain
    deadline_s = deadline_s if deadline_s is not None else _float_env("BINGO_HOST_VALIDATE_TIMEOUT",
                                                                      VALIDATE_TIMEOUT)
    deadline = time.monotonic() + deadline_s
    attempt = 0
    while True:
        attempt += 1
        failed = None
        for ask in (probe.index, probe.health):
            answer = ask(ctx.cfg, tls_domain, timeout=10)
            if not answer.ok:
                failed = f"GET {answer.url}: {answer.why()}"
                break
        if failed is None:
            echo(f"validate: / and {ctx.cfg.app.health_path} answered 200 through nginx "
                 f"({answer.url}; attempt {attempt})")
            return
        if time.monotonic() >= deadline:
            raise DeployError(f"health check through nginx failed for {deadline_s:.0f} s: {failed}")
        time.sleep(1)


# -- the events --

def bundle_source(env) -> dict:
    if env.get("BUNDLE_BUCKET"):
        return {"type": "s3", "bucket": env.get("BUNDLE_BUCKET"), "key": env.get("BUNDLE_KEY"),
                "version": env.get("BUNDLE_VERSION"), "etag": env.get("BUNDLE_ETAG")}
    if env.get("BINGO_HOST_BUNDLE"):
        return {"type": "file", "path": env.get("BINGO_HOST_BUNDLE"),
                "sha256": env.get("BINGO_HOST_BUNDLE_SHA256")}
    return {"type": "unknown"}


def preflight(ctx, archive: str) -> None:
    cfg = ctx.cfg
    paths = Paths(cfg.app.root)
    missing = [p for p in (paths.releases, paths.shared_ini, f"{layout.UWSGI_VENV}/bin/python")
               if not os.path.exists(p)]
    if missing or not os.path.lexists(paths.current):
        raise DeployError(f"this host is not bootstrapped ({', '.join(missing) or paths.current} "
                          "missing): run `bingo-host bootstrap` first")
    for path, need in ((cfg.app.root, MIN_FREE_APP_MIB), ("/", MIN_FREE_ROOT_MIB)):
        free = shutil.disk_usage(path).free // (1024 * 1024)
        if free < need:
            raise DeployError(f"only {free} MiB free on the file system of {path}; a deployment needs "
                              f"{need} MiB (remove old releases or grow the volume)")
    spec = appspec.load(Path(archive))
    wrong = [m.destination for m in spec.files if m.destination != paths.staging]
    if wrong:
        raise BundleError(f"appspec.yml installs files to {', '.join(wrong)}, but this host's "
                          f"staging directory is {paths.staging} (app.root {cfg.app.root})")


def before_install(ctx, env, echo) -> None:
    deployment_id = env["DEPLOYMENT_ID"]
    why = state.blocker(state.load(), deployment_id, _float_env("BINGO_HOST_DEPLOY_STALE_AFTER",
                                                                state.STALE_AFTER))
    if why:
        raise DeployError(f"another deployment holds this host: {why}")
    old = state.load()
    if old and old.get("status") == "in-progress" and old.get("deployment_id") != deployment_id:
        echo(f"deploy: taking over from abandoned deployment {old.get('deployment_id')} "
             f"(its {old.get('event')} hook {old.get('event_status')}, never finished)")
    pid, start = state.process_identity()
    driver = env.get("BINGO_HOST_DEPLOY_DRIVER_PID")
    drv = state.process_identity(int(driver)) if driver and driver.isdigit() else (None, None)
    record = {
        "schema": 1, "deployment_id": deployment_id,
        "application_name": env.get("APPLICATION_NAME"),
        "deployment_group": env.get("DEPLOYMENT_GROUP_NAME"),
        "deployment_group_id": env.get("DEPLOYMENT_GROUP_ID"),
        "bundle": bundle_source(env), "status": "in-progress",
        "event": "BeforeInstall", "event_status": "running", "pid": pid, "pid_start": start,
        "driver_pid": drv[0], "driver_start": drv[1], "release": deployment_id,
        "previous": None, "started_at": state.now(), "finished_at": None, "error": None,
    }
    state.save(record)
    preflight(ctx, agent.archive_dir(env))
    paths = Paths(ctx.cfg.app.root)
    if os.path.lexists(paths.staging):
        shutil.rmtree(paths.staging)
    os.mkdir(paths.staging, 0o755)
    for leftover in glob.glob(f"{paths.releases}/.*.partial"):
        shutil.rmtree(leftover, ignore_errors=True)
    echo(f"deploy: {deployment_id} holds the deploy lock; {paths.staging} is empty; "
         f"serving {current_name(paths)}")


def after_install(ctx, env, echo) -> None:
    from .releases import build

    paths = Paths(ctx.cfg.app.root)
    deployment_id = env["DEPLOYMENT_ID"]
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}", deployment_id):
        raise DeployError(f"deployment id {deployment_id!r} cannot name a release directory")
    record = {"deployment_id": deployment_id, "application_name": env.get("APPLICATION_NAME"),
              "deployment_group": env.get("DEPLOYMENT_GROUP_NAME"), "bundle": bundle_source(env),
              "bingo_host_version": __version__}
    build(paths, deployment_id, record, ctx.platform.python, ctx.cfg.app.user, echo)


def application_start(ctx, env, echo) -> None:
    paths = Paths(ctx.cfg.app.root)
    name = env["DEPLOYMENT_ID"]
    if read_record(paths.release(name)) is None:
        raise DeployError(f"release {paths.release(name)} was not built (did AfterInstall run?)")
    previous = current_name(paths)
    if previous == name:
        st = state.load()
        previous = st.get("previous") if st else None
    st = state.load()
    st["previous"] = previous
    state.save(st)
    try:
        switch_with_fallback(ctx, name, previous, echo)
    except BingoHostError as exc:
        update_record(paths, name, failed={"at": state.now(), "event": "ApplicationStart",
                                           "reason": str(exc).splitlines()[0]})
        raise
    update_record(paths, name, activated_at=state.now(), deployed_at=state.now())
    prune(paths, ctx.cfg.app.keep_releases, {name, previous or ""}, echo)


def validate_service(ctx, env, echo) -> None:
    paths = Paths(ctx.cfg.app.root)
    name = env["DEPLOYMENT_ID"]
    if current_name(paths) != name:
        raise DeployError(f"{paths.current} points at {current_name(paths)}, not at {name}")
    try:
        check_http(ctx, echo=echo)
    except BingoHostError as exc:
        previous = (state.load() or {}).get("previous")
        update_record(paths, name, failed={"at": state.now(), "event": "ValidateService",
                                           "reason": str(exc)})
        if not previous:
            raise DeployError(f"{exc}; there is no previous release to switch back to") from None
        echo(f"validate: FAILED ({exc}); switching back to {previous}")
        activate(ctx, previous, echo)
        if previous != PLACEHOLDER:
            check_http(ctx, echo=echo)
        raise DeployError(f"ValidateService failed, rolled back to {previous}: {exc}") from None
    update_record(paths, name, validated_at=state.now())


def application_stop(ctx, env, echo) -> None:
    echo("deploy: nothing to stop: the serving release keeps serving until ApplicationStart")


EVENTS = {
    "ApplicationStop": application_stop,
    "BeforeInstall": before_install,
    "AfterInstall": after_install,
    "ApplicationStart": application_start,
    "ValidateService": validate_service,
}


def run(cfg, event: str, env=None, echo=print) -> None:
    """Run one lifecycle event for the deployment named in env (os.environ by default)."""
    env = dict(os.environ if env is None else env)
    if event not in EVENTS:
        raise BundleError(f"unknown lifecycle event {event!r} (bingo-host handles "
                          f"{', '.join(EVENTS)})")
    if env.get("LIFECYCLE_EVENT") and env["LIFECYCLE_EVENT"] != event:
        raise BundleError(f"called for {event} but LIFECYCLE_EVENT is {env['LIFECYCLE_EVENT']}")
    if event == "ApplicationStop":
        return application_stop(None, env, echo)
    if not env.get("DEPLOYMENT_ID"):
        raise BundleError("DEPLOYMENT_ID is not set: hooks run under the CodeDeploy agent "
                          "or `bingo-host deploy`")
    if event == "BeforeInstall":
        upgrade.maybe_upgrade(agent.archive_dir(env), echo)
    ctx = make_context(cfg, echo=echo)
    log_to_journal()
    with host_lock(echo=echo):
        if event != "BeforeInstall":
            st = state.require(env["DEPLOYMENT_ID"])
            pid, start = state.process_identity()
            st.update(event=event, event_status="running", pid=pid, pid_start=start)
            state.save(st)
        try:
            EVENTS[event](ctx, env, echo)
        except BaseException as exc:
            st = state.load()
            if st and st.get("deployment_id") == env["DEPLOYMENT_ID"]:
                st.update(event_status="failed", status="failed", finished_at=state.now(),
                          error=str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__)
                state.save(st)
            raise
        st = state.load()
        st["event_status"] = "ok"
        if event == "ValidateService":
            st.update(status="succeeded", finished_at=state.now())
        state.save(st)


def rollback(cfg, echo=print) -> str:
    """Switch `current` back to the previous good release, reload, check through nginx; if the
    checks fail, put the release that was serving back."""
    from .releases import previous_good

    ctx = make_context(cfg, echo=echo)
    paths = Paths(ctx.cfg.app.root)
    with host_lock(echo=echo):
        why = state.blocker(state.load(), "(rollback)")
        if why:
            raise DeployError(f"a deployment holds this host: {why}")
        now_serving = current_name(paths)
        target = previous_good(paths, now_serving)
        if not target:
            raise DeployError(f"no earlier release that passed its checks to roll back to "
                              f"(serving {now_serving})")
        echo(f"rollback: {now_serving} -> {target}")
        switch_with_fallback(ctx, target, now_serving, echo)
        try:
            check_http(ctx, echo=echo)
        except BingoHostError as exc:
            echo(f"rollback: {target} failed its checks; switching back to {now_serving}")
            activate(ctx, now_serving, echo)
            raise DeployError(f"rollback to {target} failed its checks, {now_serving} serves again: "
                              f"{exc}") from None
        update_record(paths, target, activated_at=state.now(), validated_at=state.now())
        if now_serving and now_serving != PLACEHOLDER:
            update_record(paths, now_serving, failed={"at": state.now(), "event": "rollback",
                                                      "reason": "rolled back by hand"})
        return target
