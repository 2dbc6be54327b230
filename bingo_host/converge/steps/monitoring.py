"""The CloudWatch agent (cloudwatch_agent.enabled, where the platform packages it; otherwise the
step says why not): installed, its config written, (re)started with it; stopped when no longer
wanted. The metrics timer and the journal export the agent reads are the timers step's."""

from __future__ import annotations

from ... import cloudwatch_agent, layout, subp
from ...facts import paths, systemd
from ...ops import packages, service
from ...ops.service import restart

NAME = "monitoring"
AGENT = cloudwatch_agent.SERVICE
UNITS = (AGENT,)
LOGROTATE = "/etc/logrotate.d/bingo-host"


def converge(ctx) -> str:
    cfg, platform = ctx.cfg, ctx.platform
    said = f"metrics every {cfg.metrics.interval_minutes} min" if cfg.metrics.enabled else "metrics off"
    agent_conf = ctx.managed("cloudwatch-agent.json")
    if agent_conf:
        if not ctx.fact(paths.exists, layout.CLOUDWATCH_AGENT_CTL):
            ctx.change(f"install {platform.cloudwatch_agent_package}",
                       lambda: packages.install(platform, [platform.cloudwatch_agent_package]))
        ctx.ensure_file(ctx.managed("logrotate.conf"))
        ctx.ensure_file(agent_conf)
        state = ctx.fact(systemd.states, AGENT)[AGENT]
        owed = restart(AGENT)
        if ctx.pending(owed) or not state.running or not state.is_enabled:
            ctx.change("amazon-cloudwatch-agent-ctl fetch-config (restart the agent with it)",
                       lambda: subp.run(cloudwatch_agent.fetch_config_cmd(), timeout=300))
            ctx.done(owed)
        return f"{said}; CloudWatch agent running"
    # Not wanted: an agent we configured earlier stops; the package and others' configs stay.
    if ctx.fact(paths.exists, layout.CLOUDWATCH_AGENT_CONFIG):
        state = ctx.fact(systemd.states, AGENT)[AGENT]
        if state.running or state.is_enabled:
            ctx.change(f"disable --now {AGENT}", lambda: service.systemctl("disable", "--now", AGENT))
        ctx.remove_file(layout.CLOUDWATCH_AGENT_CONFIG)
    ctx.remove_file(LOGROTATE)
    if not cfg.cloudwatch_agent.enabled:
        return (f"{said}; CloudWatch agent off (cloudwatch_agent.enabled; below 1 GiB 'auto' leaves "
                "it off: bingo-host's metrics timer costs less)")
    return f"{said}; CloudWatch agent skipped: {platform.cloudwatch_agent_skip_reason}"
