"""Where drill results go: JSON and HTML under ``<data dir>/drills/reports/``, a line in
``<data dir>/drills/history.jsonl``, and a copy at the alert-receiver (``/drills``)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from obslab import conventions as c

HISTORY = "history.jsonl"


def drills_dir(data_dir: Path) -> Path:
    return data_dir / "drills"


def write_report(data_dir: Path, result: dict[str, Any], lab: Any | None = None) -> Path:
    """Write ``result`` as ``<run_id>.json`` and ``.html``; append it to the history; post it to
    the lab's alert-receiver when ``lab`` is given. Returns the JSON file's path."""
    from obslab.services.alert_receiver.drill_pages import render_report

    directory = drills_dir(data_dir) / "reports"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{result['run_id']}.json"
    result["report"] = str(path)
    result["report_html"] = str(path.with_suffix(".html"))
    path.write_text(json.dumps(result, indent=2, sort_keys=False))
    path.with_suffix(".html").write_text(render_report(result))
    with (drills_dir(data_dir) / HISTORY).open("a") as history:
        history.write(json.dumps({
            "run_id": result["run_id"], "name": result["name"], "mode": result.get("mode", "run"),
            "passed": result["passed"], "profile": result.get("profile"),
            "started_at": result.get("started_at") or time.time(), "report": str(path),
            **({"score": result["score"]} if "score" in result else {}),
        }) + "\n")
    if lab is not None:
        lab.post_receiver(f"{c.API_PREFIX}/drills", result)
    return path


def history(data_dir: Path) -> list[dict[str, Any]]:
    path = drills_dir(data_dir) / HISTORY
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue   # a line cut short by a crash: skip it, keep the rest
    return rows
