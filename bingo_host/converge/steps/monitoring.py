"""What CloudWatch gets from this host: bingo-host's metrics timer (metrics.enabled), and the
CloudWatch agent with its config and the journal export it reads (cloudwatch_agent.enabled,
where the platform packages the agent; otherwise the step says why not)."""

from __future__ import annotations

import os

from ... import cloudwatch_agent, layout, subp
from ...facts import systemd
from ...ops import packages, service
from ...render import restart
from .timers import converge_timer, unit_paths

NAME = "monitoring"
METRICS_TIMER = f"{layout.METRICS_UNIT}.timer"
EXPORT_TIMER = f"{layout.JOURNAL_EXPORT_UNIT}.timer"
AGENT = cloudwatch_agent.SERVICE


def converge(ctx) -> str:
    cfg, platform = ctx.cfg, ctx.platform
    states = systemd.states(METRICS_TIMER, EXPORT_TIMER, AGENT)
    metrics = [mf for mf in (ctx.managed("metrics.service"), ctx.managed("metrics.timer")) if mf]
    converge_timer(ctx, METRICS_TIMER, metrics, unit_paths(layout.METRICS_UNIT), states[METRICS_TIMER])
    said = [f"metrics every {cfg.metrics.interval_minutes} min" if metrics else "metrics off"]

    agent_conf = ctx.managed("cloudwatch-agent.json")
    export = [mf for mf in (ctx.managed("journal-export.service"), ctx.managed("journal-export.timer"))
              if mf]
    if agent_conf:
        if not os.path.exists(layout.CLOUDWATCH_AGENT_CTL):
            ctx.change(f"install {platform.cloudwatch_agent_package}",
                       lambda: packages.install(platform, [platform.cloudwatch_agent_package]))
        logrotate = ctx.managed("logrotate.conf")
        ctx.ensure_file(logrotate)
    converge_timer(ctx, EXPORT_TIMER, export, unit_paths(layout.JOURNAL_EXPORT_UNIT), states[EXPORT_TIMER])
    if agent_conf:
        ctx.ensure_file(agent_conf)
        owed = restart(AGENT)
        if ctx.pending(owed) or not states[AGENT].running or not states[AGENT].is_enabled:
            ctx.change("amazon-cloudwatch-agent-ctl fetch-config (restart the agent with it)",
                       lambda: subp.run(cloudwatch_agent.fetch_config_cmd(), timeout=300))
            ctx.done(owed)
        said.append("CloudWatch agent running")
        return "; ".join(said)
    # Not wanted: an agent we configured earlier stops; the package and others' configs stay.
    if os.path.exists(layout.CLOUDWATCH_AGENT_CONFIG):
        if states[AGENT].running or states[AGENT].is_enabled:
            ctx.change(f"disable --now {AGENT}", lambda: service.systemctl("disable", "--now", AGENT))
        ctx.remove_file(layout.CLOUDWATCH_AGENT_CONFIG)
    ctx.remove_file("/etc/logrotate.d/bingo-host")
    if not cfg.cloudwatch_agent.enabled:
        said.append("CloudWatch agent off (cloudwatch_agent.enabled; below 1 GiB 'auto' leaves it "
                    "off: bingo-host's metrics timer costs less)")
    else:
        said.append(f"CloudWatch agent skipped: {platform.cloudwatch_agent_skip_reason}")
    return "; ".join(said)
