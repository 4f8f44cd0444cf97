"""Prometheus recording and alert rules, generated from the spec in ``prometheus/spec/``.

The spec (versioned YAML, format in ``prometheus/spec/README.md``) is the one source: ``obslab
rules generate`` (also part of ``obslab generate``) writes ``prometheus/rules/*.yml``, the
generated ``promtool`` tests under ``prometheus/rules/tests/generated/`` and the runbook index;
``--check`` (and a test) fails when a committed copy is stale.
"""

from collections.abc import Callable

from obslab.profiles import PRODUCTION, Profile
from obslab.rules.build import Catalog, load_catalog
from obslab.rules.model import AlertRule, RecordingRule, Rule, RuleGroup
from obslab.rules.render import RuleFile, render

__all__ = [
    "AlertRule",
    "Catalog",
    "RecordingRule",
    "Rule",
    "RuleFile",
    "RuleGroup",
    "all_alerts",
    "generated_files",
    "load_catalog",
    "render",
    "rule_files",
]


def rule_files(profile: Profile = PRODUCTION) -> dict[str, RuleFile]:
    """Repository-relative path -> the rule file generated there (for ``profile``: its text is
    what the committed file holds only for production)."""
    return load_catalog().rule_files(profile)


def generated_files() -> dict[str, Callable[[], str]]:
    """Repository-relative path -> function producing its current content: the rule files, their
    promtool tests and the runbook index."""
    return load_catalog().generated()


def all_alerts() -> list[AlertRule]:
    """Every alert rule (an SLO alert once per window pair, under one name)."""
    return load_catalog().alerts()
