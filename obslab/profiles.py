"""Time profiles: production values ship in the generated files; ``fast`` scales them down.

Drills and integration tests need minutes, not hours. Every interval any generated
configuration uses is taken from the active profile, so the two cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass

from obslab.settings import ConfigError


@dataclass(frozen=True)
class Profile:
    name: str
    scrape_default_s: int
    scrape_banking_s: int     # seeds: banking services 10 s
    scrape_ml_s: int          # seeds: ML services 15 s
    scrape_iis_s: int         # seeds: Windows IIS 15 s
    evaluation_s: int

    def duration(self, seconds: int) -> str:
        """Prometheus duration text: ``15`` -> ``"15s"``."""
        return f"{seconds}s"


PRODUCTION = Profile("production", scrape_default_s=15, scrape_banking_s=10, scrape_ml_s=15,
                     scrape_iis_s=15, evaluation_s=15)
FAST = Profile("fast", scrape_default_s=2, scrape_banking_s=2, scrape_ml_s=2, scrape_iis_s=2, evaluation_s=2)

PROFILES = {p.name: p for p in (PRODUCTION, FAST)}


def profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ConfigError(f"unknown profile {name!r}; choose one of: {', '.join(PROFILES)}") from None
