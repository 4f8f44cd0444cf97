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
import sys
import time
from typing import Any

from obslab import settings
from obslab.drills.catalog import load_drills
from obslab.drills.lab import DrillError, Lab
from obslab.drills.model import CAUSES, STOP
from obslab.drills.reports import history, write_report
from obslab.drills.runner import new_run_id, read_active, repair, undo, write_active
from obslab.labapi import text_table


def _game(lab: Lab) -> dict[str, Any] | None:
    return read_active(lab).get("game")


def _save(lab: Lab, game: dict[str, Any] | None) -> None:
    data = read_active(lab)
    data["game"] = game
    write_active(lab, data)


def start(args: argparse.Namespace) -> int:
    if bool(args.name) == bool(args.random):
        raise DrillError("name a drill, or --random")
    catalog = load_drills(args.drills)
    lab = Lab.connect(settings.data_dir(args.data_dir))
    lab.check()
    if _game(lab):
        raise DrillError("a game is already on; answer it (`obslab drill answer CAUSE`) and `obslab drill end` it")
    repair(lab)
    drill = random.SystemRandom().choice(catalog.drills) if args.random else catalog.get(args.name)
    ttl = settings.parse_duration(args.ttl)
    run_id = new_run_id("game")
    started = time.time()
    game: dict[str, Any] = {"run_id": run_id, "drill": drill.name, "started_at": started, "blind": args.blind,
                            "answers": [], "ttl_seconds": ttl, "faults": [], "stopped": []}
    _save(lab, game)
    try:
        for step in drill.timeline:
            if step.kind == STOP:
                game["stopped"].append(step.target)     # remembered before acting
                _save(lab, game)
                lab.stop(step.target)
            else:
                fault = lab.set_fault({"kind": step.kind.value, "target": step.target, **step.params,
                                       "ttl_seconds": int(ttl), "reason": f"game day {run_id}"})
                game["faults"].append(fault["id"])
                _save(lab, game)
    except BaseException:
        undo(lab, game, print, "a game that could not start")
        _save(lab, None)
        raise
    lab.post_receiver("/api/v1/drills/events", {"run_id": run_id, "drill": "game-day", "event": "start",
                                                "at": started, "passed": None})
    print(f"Game on ({run_id}), started {time.strftime('%H:%M:%S', time.localtime(started))}; its faults end "
          f"by themselves after {args.ttl}" + (" (a stopped component waits for `obslab drill end`)."
                                              if game["stopped"] else "."))
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
        if repair(lab):
            return 0
        raise DrillError("no game is on and no drill left anything behind; start a game with "
                         "`obslab drill start --random`")
    catalog = load_drills(args.drills)
    drill = catalog.get(game["drill"])
    started = game["started_at"]
    ended = time.time()
    expected = {e.alert for e in drill.expect if not e.absent}
    # Mitigated: what the drill raises fired, and had stopped firing while its faults were still
    # on (cleared by a mitigation, not by the faults' own expiry). Unknown when Prometheus or the
    # receiver cannot say.
    mitigated: bool | None
    try:
        firing_now = {a["labels"].get("alertname") for a in lab.prometheus_alerts() if a.get("state") == "firing"}
        notes = [n for n in lab.notifications() if n.get("received_at", 0) >= started]
        still_on = not game["faults"] or bool(set(game["faults"]) & {f["id"] for f in lab.active_faults()})
    except DrillError as exc:
        print(f"obslab: cannot score the mitigation: {exc}", file=sys.stderr)
        firing_now, notes, still_on = set(), [], False
    pages = sorted(n["received_at"] for n in notes
                   for a in n.get("alerts", []) if a.get("alertname") in expected and a.get("status") == "firing")
    mitigated = (bool(pages) and not (expected & firing_now) and still_on) if notes or firing_now else None
    say = (lambda text: print(text, file=sys.stderr)) if args.json else print
    left = undo(lab, game, say, "the game")
    _save(lab, None if not (left["faults"] or left["stopped"]) else {**game, **left})
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
    print("  mitigated before the faults were cleared: " +
          {True: "yes", False: "no", None: "unknown (Prometheus or the receiver did not answer)"}[mitigated])
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

