"""What the generator tells a person: a one-line status while it runs, a summary at the end."""

from __future__ import annotations

from obslab.conventions.loadgen import JOURNEY_DROPPED
from obslab.services.loadgen.recorder import RECENT_SECONDS, Snapshot


def clock_text(seconds: float) -> str:
    """``83`` -> ``"01:23"``, ``3723`` -> ``"1:02:03"``."""
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


def ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.0f}ms"


def status_line(snap: Snapshot, *, elapsed: float, target: float, phase: str, users: str, flood: str) -> str:
    """``01:23 running | 2.1/s of 2.0 journeys/s | req 512 (9 4xx, 1 failed) | p50/p95 42/310ms | ...``

    Most important first: a narrow terminal cuts the end of the line.
    """
    actual = snap.started_recent / min(RECENT_SECONDS, max(elapsed, 1.0))
    dropped = snap.journeys_by_outcome().get(JOURNEY_DROPPED, 0)
    outcomes = snap.by_outcome
    failed = outcomes.get("server_error", 0) + outcomes.get("timeout", 0) + outcomes.get("connection_error", 0)
    shown = [f"{count} {label}" for label, count in (
        ("4xx", outcomes.get("client_error", 0)), ("429", outcomes.get("rate_limited", 0)), ("failed", failed),
    ) if count]
    p50, p95 = snap.recent_p50, snap.recent_p95
    latency = "p50/p95 -" if p50 is None or p95 is None else f"p50/p95 {p50 * 1000:.0f}/{p95 * 1000:.0f}ms"
    parts = [
        f"{clock_text(elapsed)} {phase}",
        f"{actual:.1f}/s of {target:.1f} journeys/s",
        f"req {snap.requests}" + (f" ({', '.join(shown)})" if shown else ""),
        latency,
        flood,
    ]
    if dropped:
        parts.append(f"{dropped} dropped")
    parts.append(f"users {users}")
    return " | ".join(parts)


def summary(snap: Snapshot, *, elapsed: float, reason: str | None) -> str:
    journeys = snap.journeys_by_outcome()
    done = sum(count for outcome, count in journeys.items() if outcome != JOURNEY_DROPPED)
    lines = [
        f"Load run finished after {clock_text(elapsed)}" + (f" ({reason})" if reason else "") + ".",
        f"  journeys: {done} run ({', '.join(f'{k} {v}' for k, v in sorted(journeys.items())) or 'none'})",
        f"  by kind:  {', '.join(f'{k} {v}' for k, v in sorted(snap.journeys_by_kind().items())) or 'none'}",
        f"  requests: {snap.requests} ({', '.join(f'{k} {v}' for k, v in sorted(snap.by_outcome.items())) or 'none'})"
        f", plus {snap.setup_requests} to set customers up",
        f"  latency:  p50 {ms(snap.p50)}, p95 {ms(snap.p95)}, p99 {ms(snap.p99)}",
    ]
    if snap.replays:
        lines.append(f"  retried transfers: {snap.replays} replayed"
                     + (f", {snap.replay_mismatches} answered differently (a bug)" if snap.replay_mismatches else
                        ", all answered identically"))
    if snap.problems:
        top = ", ".join(f"{reason} ({count}x)" for reason, count in snap.problems.most_common(3))
        lines.append(f"  errors:   {top}")
    if snap.flood_requests:
        lines.append(f"  flood: {snap.flood_requests} requests")
    return "\n".join(lines)
