"""Who is on call: a plain report from the config and the time (no I/O), for the `oncall`
chat command and `intake oncall`."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from bot.config import Config
from bot.paging.rota import next_handoffs, on_call


def report(config: Config, at: datetime, handoffs: int = 2) -> str:
    """Return who is on call at ``at`` on each rota (with the next ``handoffs`` hand-offs in
    the rota's own time zone) and who each tier's first step pages now."""
    lines = [f"On call at {at:%Y-%m-%d %H:%M} UTC:"]
    for rota_config in config.rotas:
        rota = config.rota(rota_config.name)
        if rota is None:  # pragma: no cover - the config guarantees every rota builds
            continue
        zone = ZoneInfo(rota.zone)
        now = ", ".join(on_call(rota, at)) or "NOBODY (hole!)"
        lines.append(f"{rota.name}: {now}")
        for when, who in next_handoffs(rota, at, handoffs):
            local = when.astimezone(zone)
            lines.append(f"  from {local:%a %d %b %H:%M} {rota.zone}: {', '.join(who) or 'nobody'}")
    if not config.rotas:
        lines.append("(no rotas configured; policies name responders directly)")
    lines.append("First page now, by tier:")
    for tier, policy in config.paging.items():
        names = config.resolve_targets(policy.steps[0].notify, at)
        lines.append(f"  {tier}: {', '.join(names) or 'NOBODY (hole!)'}")
    return "\n".join(lines)
