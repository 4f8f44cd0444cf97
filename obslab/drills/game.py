"""Game day (Google's "Wheel of Misfortune", live): a drill injected without its name, a person
who works from the page and the runbook, and a score.

``start`` injects every step of the drill at once (each fault with a TTL: the game ends by
itself if nobody ends it) and remembers the game in ``<data dir>/drills/active.json``;
``answer`` records the diagnosis (one of the cause vocabulary); ``end`` clears everything and
scores: time to the first notification, time to the answer, whether the answer was right, and
whether a mitigation ended the incident before the faults were cleared (the alerts it raised
had resolved while the faults were still on).
"""

from __future__ import annotations

import argparse
import json
import random
import time
from typing import Any

from obslab import settings
from obslab.drills.catalog import load_drills
from obslab.drills.lab import DrillError, Lab
from obslab.drills.model import CAUSES, STOP, timing_seconds
from obslab.drills.reports import history, write_report
from obslab.drills.runner import _read_json, active_path, new_run_id, repair
from obslab.labapi import text_table


def _game(lab: Lab) -> dict[str, Any] | None:
    data = _read_json(active_path(lab)) or {}
    return data.get("game")


def _save(lab: Lab, game: dict[str, Any] | None, *, faults: list[str] | None = None,
          stopped: list[str] | None = None) -> None:
    path = active_path(lab)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = _read_json(path) or {"faults": [], "stopped": []}
    data["game"] = game
    if faults is not None:
        data["faults"] = faults
    if stopped is not None:
        data["stopped"] = stopped
    data["pid"] = None      # a game outlives the command that started it: nothing to repair by pid
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(path)


def start(args: argparse.Namespace) -> int:
    if bool(args.name) == bool(args.random):
        raise DrillError("name a drill, or --random")
    catalog = load_drills(args.drills)
    lab = Lab.connect(settings.data_dir(args.data_dir))
    if _game(lab):
        raise DrillError("a game is already on; answer it (`obslab drill answer CAUSE`) and `obslab drill end` it")
    repair(lab)
    drill = random.SystemRandom().choice(catalog.drills) if args.random else catalog.get(args.name)
    ttl = settings.parse_duration(args.ttl)
    run_id = new_run_id("game")
    faults, stopped = [], []
    started = time.time()
    try:
        for step in drill.timeline:
            if step.kind == STOP:
                lab.stop(step.target)
                stopped.append(step.target)
            else:
                fault = lab.set_fault({"kind": step.kind.value, "target": step.target, **step.params,
                                       "ttl_seconds": int(ttl), "reason": f"game day {run_id}"})
                faults.append(fault["id"])
            _save(lab, None, faults=faults, stopped=stopped)
    except BaseException:
        _save(lab, None, faults=faults, stopped=stopped)
        repair(lab)
        raise
    _save(lab, {"run_id": run_id, "drill": drill.name, "started_at": started, "blind": args.blind,
                "answers": [], "ttl_seconds": ttl}, faults=faults, stopped=stopped)
    lab.post_receiver("/api/v1/drills/events", {"run_id": run_id, "drill": "game-day", "event": "start",
                                                "at": started, "passed": None})
    print(f"Game on ({run_id}), started {time.strftime('%H:%M:%S', time.localtime(started))}; the faults end "
          f"by themselves after {args.ttl}.")
    if not args.blind:
        print(f"\nWhat the on-call sees first:\n  {drill.story.strip()}\n")
    print(f"Work from the page (`obslab alerts`, {lab.urls.get('alert-receiver', '')}/) and its runbook.\n"
          "Answer with `obslab drill answer CAUSE` (`obslab drill answer --help` lists the causes), mitigate "
          "if you can, then `obslab drill end`.")
    return 0


def answer(args: argparse.Namespace) -> int:
    lab = Lab.connect(settings.data_dir(args.data_dir))
    game = _game(lab)
    if not game:
        raise DrillError("no game is on; start one with `obslab drill start --random`")
    if args.cause not in CAUSES:
        raise DrillError(f"unknown cause {args.cause!r}; choose one of: {', '.join(CAUSES)}")
    game["answers"].append({"cause": args.cause, "at": time.time()})
    _save(lab, game)
    print(f"Recorded: {args.cause} at +{time.time() - game['started_at']:.0f} s. Mitigate if you can, then "
          "`obslab drill end`.")
    return 0


def end(args: argparse.Namespace) -> int:
    data_dir = settings.data_dir(args.data_dir)
    lab = Lab.connect(data_dir)
    game = _game(lab)
    if not game:
        left = _read_json(active_path(lab)) or {}
        if left.get("faults") or left.get("stopped"):
            _save(lab, None, faults=left.get("faults", []), stopped=left.get("stopped", []))
            repair(lab)
            return 0
        raise DrillError("no game is on (and nothing left behind); start one with `obslab drill start --random`")
    catalog = load_drills(args.drills)
    drill = catalog.get(game["drill"])
    started = game["started_at"]
    ended = time.time()
    expected = {e.alert for e in drill.expect if not e.absent}
    # Mitigated: what the drill raises fired, and had stopped firing before the faults were cleared.
    try:
        firing_now = {a["labels"].get("alertname") for a in lab.prometheus_alerts() if a.get("state") == "firing"}
    except DrillError:
        firing_now = set()
    notes = [n for n in lab.notifications() if n.get("received_at", 0) >= started]
    pages = sorted(n["received_at"] for n in notes
                   for a in n.get("alerts", []) if a.get("alertname") in expected and a.get("status") == "firing")
    fired = bool(pages)
    mitigated = fired and not (expected & firing_now)
    repair_data = _read_json(active_path(lab)) or {}
    _save(lab, None, faults=repair_data.get("faults", []), stopped=repair_data.get("stopped", []))
    repair(lab)
    answers = game.get("answers", [])
    first = answers[0] if answers else None
    score = {
        "first_notification_seconds": None if not pages else round(pages[0] - started, 1),
        "answer": first["cause"] if first else None,
        "answer_seconds": None if not first else round(first["at"] - started, 1),
        "answer_correct": bool(first and first["cause"] == drill.cause),
        "cause": drill.cause,
        "mitigated_before_clear": mitigated,
        "duration_seconds": round(ended - started, 1),
    }
    result = {
        "run_id": game["run_id"], "name": drill.name, "title": drill.title, "story": drill.story,
        "cause": drill.cause, "profile": lab.profile.name, "mode": "game", "passed": score["answer_correct"],
        "started_at": started, "fault_started_at": started, "fault_ended_at": ended, "ended_at": ended,
        "faults": [{"kind": s.kind_name, "target": s.target, "params": s.params, "start_s": 0.0,
                    "end_s": round(ended - started, 1)} for s in drill.timeline],
        "alerts": [], "quiet": [], "diagnose": [], "unexpected": [], "unexpected_detail": [],
        "problems": [] if score["answer_correct"] else [f"answered {score['answer']!r}, the cause was {drill.cause!r}"],
        "score": score,
        "timeline": {"alerts": [], "series": [], "notifications": [
            {"alert": a.get("alertname"), "receiver": n.get("receiver"), "status": a.get("status"),
             "at_s": round(n["received_at"] - started, 1)} for n in notes for a in n.get("alerts", [])
            if a.get("alertname") != "Watchdog"]},
    }
    path = write_report(data_dir, result, lab)
    lab.post_receiver("/api/v1/drills/events", {"run_id": game["run_id"], "drill": "game-day", "event": "end",
                                                "at": ended, "passed": score["answer_correct"]})
    if args.json:
        print(json.dumps({"drill": drill.name, "title": drill.title, **score, "report": str(path)}))
        return 0
    print(f"The drill was {drill.name}: {drill.title} (cause: {drill.cause}).")
    first_note = score["first_notification_seconds"]
    print(f"  first notification: {'none' if first_note is None else f'+{first_note:.0f} s'}")
    if first:
        verdict = "right" if score["answer_correct"] else "wrong"
        print(f"  your answer: {first['cause']} at +{score['answer_seconds']:.0f} s ({verdict})")
    else:
        print("  no answer recorded")
    print(f"  mitigated before the faults were cleared: {'yes' if mitigated else 'no'}")
    print(f"  report: {path.with_suffix('.html')}")
    return 0


def show_history(args: argparse.Namespace) -> int:
    rows = history(settings.data_dir(args.data_dir))[-max(1, args.limit):][::-1]
    if args.json:
        print(json.dumps(rows))
        return 0
    if not rows:
        print("no drills yet; `obslab drill run NAME` or `obslab drill start --random`")
        return 0
    print(text_table(["WHEN", "MODE", "DRILL", "RESULT", "REPORT"], [
        [time.strftime("%Y-%m-%d %H:%M", time.localtime(r["started_at"])), r.get("mode", "run"), r["name"],
         "pass" if r["passed"] else "FAIL", r["report"]] for r in rows]))
    return 0


__all__ = ["start", "answer", "end", "show_history", "timing_seconds"]
