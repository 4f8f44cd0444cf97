"""Grafana for the compose runtime: provisioning and dashboards, generated from Python.

The dashboards are plain dicts built by small helpers (:mod:`obslab.generators.grafana.panels`) from the
names in :mod:`obslab.conventions` and the rule catalog, rather than with a dashboard SDK: the
JSON Grafana 11 imports is a few dozen fields per panel, and owning the builders keeps the
parts this lab depends on (fixed datasource UIDs, ``exemplar`` on latency targets, links
between dashboards) explicit and testable without another runtime dependency. Why, at more
length: ``grafana/README.md``.

``obslab generate`` writes every file of :func:`generated_files`; a test fails when a
committed copy is stale.
"""

from __future__ import annotations

from collections.abc import Callable

from obslab.generators.grafana import dashboards, datasources
from obslab.generators.grafana.dashboards import DASHBOARDS, Dashboard
from obslab.generators.grafana.datasources import ALERTMANAGER_UID, JAEGER_UID, PROMETHEUS_UID
from obslab.generators.grafana.panels import COMPOSE_ONLY_METRICS, compose_only_reason

DATASOURCES_PATH = "grafana/provisioning/datasources/datasources.yml"
DASHBOARD_PROVIDER_PATH = "grafana/provisioning/dashboards/dashboards.yml"

__all__ = [
    "ALERTMANAGER_UID",
    "COMPOSE_ONLY_METRICS",
    "DASHBOARDS",
    "DASHBOARD_PROVIDER_PATH",
    "DATASOURCES_PATH",
    "Dashboard",
    "JAEGER_UID",
    "PROMETHEUS_UID",
    "compose_only_reason",
    "generated_files",
]


def generated_files() -> dict[str, Callable[[], str]]:
    """Repository-relative path -> function producing its current content."""
    files: dict[str, Callable[[], str]] = {
        DATASOURCES_PATH: datasources.render_datasources,
        DASHBOARD_PROVIDER_PATH: datasources.render_dashboard_provider,
    }
    for dashboard in DASHBOARDS:
        files[dashboards.path_of(dashboard)] = lambda dashboard=dashboard: dashboards.render(dashboard)
    return files
