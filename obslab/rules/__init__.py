"""Prometheus recording and alert rules, written as data and rendered to prometheus/rules/.

Each committed rule file is a :class:`RuleFile` registered in :func:`rule_files`; ``obslab
generate`` writes them and fails ``--check`` when one is stale. Add a domain by writing its
module (like :mod:`obslab.rules.iis`) and registering its file here.
"""

from obslab.rules import iis
from obslab.rules.model import AlertRule, RecordingRule, Rule, RuleGroup
from obslab.rules.render import RuleFile, render

__all__ = [
    "AlertRule",
    "RecordingRule",
    "Rule",
    "RuleFile",
    "RuleGroup",
    "all_alerts",
    "render",
    "rule_files",
]


def rule_files() -> dict[str, RuleFile]:
    """Repository-relative path -> the rule file generated there."""
    return {"prometheus/rules/iis.yml": iis.RULES}


def all_alerts() -> list[AlertRule]:
    """Every alert of every rule file; names are unique across files (one runbook each)."""
    alerts = [alert for rule_file in rule_files().values() for alert in rule_file.alerts()]
    names = [alert.alert for alert in alerts]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"alerts defined more than once: {', '.join(duplicates)}")
    return alerts
