"""``obslab drill list|show|run|coverage|start|answer|end|history``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from obslab import settings
from obslab.drills.catalog import load_drills
from obslab.drills.lab import DrillError, Lab
from obslab.drills.model import CAUSES
from obslab.labapi import text_table
from obslab.profiles import FAST, PRODUCTION

HELP = "incident drills: break the lab on purpose, check who is paged in time, score it"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="drill_action", required=True, metavar="ACTION")

    def data_dir(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--data-dir", metavar="DIR",
                         help="the lab's state directory (default: $OBSLAB_DATA_DIR or .obslab/)")

    def drills_dir(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--drills", metavar="DIR", type=Path,
                         help="a folder of drill files (default: the repository's drills/)")

    list_ = actions.add_parser("list", help="the drills of drills/")
    list_.add_argument("--json", action="store_true", help="print JSON")
    drills_dir(list_)
    show = actions.add_parser("show", help="a drill's story, timeline, expectations and runbooks")
    show.add_argument("name", metavar="NAME")
    drills_dir(show)
    coverage = actions.add_parser("coverage", help="which drills exercise each alert, fault kind and runbook")
    coverage.add_argument("--json", action="store_true", help="print JSON")
    drills_dir(coverage)

    run = actions.add_parser("run", help="run drills against the running lab and score them")
    run.add_argument("name", nargs="?", metavar="NAME", help="the drill to run (or --all)")
    run.add_argument("--all", action="store_true", help="run every drill")
    run.add_argument("--json", action="store_true", help="print the results as JSON")
    run.add_argument("--keep-going", action="store_true", help="with --all: run the rest after a failure")
    run.add_argument("--parallel", type=int, default=1, metavar="N",
                     help="run up to N drills at once when they cannot disturb each other (default: 1)")
    data_dir(run)
    drills_dir(run)

    start = actions.add_parser("start", help="game day: inject a drill's faults without naming it")
    start.add_argument("name", nargs="?", metavar="NAME")
    start.add_argument("--random", action="store_true", help="pick a drill at random")
    start.add_argument("--blind", action="store_true", help="do not even print the story: work from the page")
    start.add_argument("--ttl", default="30m", help="the faults end by themselves after this (default: 30m)")
    data_dir(start)
    drills_dir(start)
    answer = actions.add_parser("answer", help="game day: record your diagnosis",
                                description="Causes: " + "; ".join(f"{k}: {v}" for k, v in CAUSES.items()))
    answer.add_argument("cause", metavar="CAUSE", help="one of: " + ", ".join(CAUSES))
    data_dir(answer)
    end = actions.add_parser("end", help="game day: clear everything and score the response (without a game: "
                                         "clear what an interrupted drill left behind)")
    end.add_argument("--json", action="store_true", help="print the score as JSON")
    data_dir(end)
    drills_dir(end)
    history = actions.add_parser("history", help="past drill runs and game days")
    history.add_argument("--json", action="store_true", help="print JSON")
    history.add_argument("--limit", type=int, default=50, help="newest N (default: 50)")
    data_dir(history)


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except DrillError as exc:
        print(f"obslab: error: {exc}", file=sys.stderr)
        return 2


def _duration(value: Any) -> str:
    if isinstance(value, str):
        return value
    return f"{value.production} (fast: {value.fast})"


def _run(args: argparse.Namespace) -> int:
    action = args.drill_action
    if action == "list":
        catalog = load_drills(args.drills)
        rows = [{"name": d.name, "title": d.title,
                 "faults": [{"kind": s.kind_name, "target": s.target} for s in d.timeline],
                 "expect": [e.alert for e in d.expect]} for d in catalog.drills]
        if args.json:
            print(json.dumps(rows))
        else:
            print(text_table(["NAME", "TITLE", "FAULTS", "EXPECTS"], [
                [r["name"], r["title"], ", ".join(f"{f['kind']} {f['target']}" for f in r["faults"]),
                 ", ".join(dict.fromkeys(r["expect"]))] for r in rows]))
        return 0
    if action == "show":
        print(_show(load_drills(args.drills), args.name))
        return 0
    if action == "coverage":
        catalog = load_drills(args.drills)
        coverage = catalog.coverage()
        gaps = catalog.gaps()
        if args.json:
            print(json.dumps({**coverage, "gaps": gaps}))
        else:
            for title, table in (("ALERT", coverage["alerts"]), ("FAULT KIND", coverage["fault_kinds"]),
                                 ("RUNBOOK", coverage["runbooks"])):
                print(text_table([title, "DRILLS"], [[k, ", ".join(v) or "-"] for k, v in table.items()]))
                print()
            print("Gaps:" if gaps else "No gaps: every alert and fault kind is drilled.")
            for gap in gaps:
                print(f"  {gap}")
        return 0
    if action == "run":
        return _run_drills(args)
    from obslab.drills import game

    if action == "start":
        return game.start(args)
    if action == "answer":
        return game.answer(args)
    if action == "end":
        return game.end(args)
    if action == "history":
        return game.show_history(args)
    raise DrillError(f"unknown action {action!r}")


def _show(catalog: Any, name: str) -> str:  # noqa: C901
    drill = catalog.get(name)
    lines = [f"{drill.name}: {drill.title}", "", drill.story.strip(), "", f"Cause (game answer): {drill.cause}",
             "", "Timeline:"]
    for step in drill.timeline:
        lines.append(f"  +{_duration(step.start)}  {step.describe()} for {_duration(step.duration)}")
    lines += ["", "Must fire (alert, labels, receiver, deadline; floor in production / fast):"]
    from obslab.drills.catalog import floor_seconds

    for e in drill.expect:
        what = "must stop arriving at" if e.absent else "->"
        floors = f"{floor_seconds(catalog.rules, e, PRODUCTION):.0f} s / {floor_seconds(catalog.rules, e, FAST):.0f} s"
        lines.append(f"  {e.alert} {e.labels or ''} {what} {e.receiver} within {_duration(e.within)} "
                     f"(floor {floors})")
    if drill.quiet:
        lines += ["", "Must stay quiet:"]
        lines += [f"  {q.alert} {q.labels or ''}" + (" (may fire, must be inhibited)" if q.inhibited else "")
                  for q in drill.quiet]
    if drill.diagnose:
        lines += ["", "Diagnosis (runbook query: shows the cause during the incident, not before):"]
        lines += [f"  {d.runbook}: {d.query}  {d.shows}" + (f" for {d.labels}" if d.labels else "")
                  for d in drill.diagnose]
    if drill.resolve:
        lines += ["", "Must resolve after the faults end:"]
        lines += [f"  {r.alert} {r.labels or ''} within {_duration(r.within)}" for r in drill.resolve]
    if drill.mitigation:
        lines += ["", "Mitigations that end it:"] + [f"  {m}" for m in drill.mitigation]
    lines += ["", "Runbooks:"] + [f"  runbooks/{name}.md" for name in drill.runbooks()]
    return "\n".join(lines)


def _run_drills(args: argparse.Namespace) -> int:
    from obslab.drills.reports import write_report
    from obslab.drills.runner import DrillInterrupted, run_drills

    if bool(args.name) == bool(args.all):
        raise DrillError("name one drill, or --all (`obslab drill list` shows them)")
    if args.parallel < 1:
        raise DrillError("--parallel must be 1 or more")
    catalog = load_drills(args.drills)
    drills = list(catalog.drills) if args.all else [catalog.get(args.name)]
    data_dir = settings.data_dir(args.data_dir)
    lab = Lab.connect(data_dir)
    lab.check()
    say = (lambda text: print(text, file=sys.stderr, flush=True)) if args.json else \
        (lambda text: print(text, flush=True))
    say(f"Running {len(drills)} drill(s) against the {lab.runtime} lab in {data_dir} "
        f"(profile {lab.profile.name}, up to {args.parallel} at once)")
    interrupted = False
    written: dict[str, dict] = {}

    def report(result: dict) -> None:
        write_report(data_dir, result, lab)
        written[result["run_id"]] = result

    try:
        results = run_drills(drills, catalog, lab, parallel=args.parallel, keep_going=args.keep_going or not args.all,
                             say=say, on_result=report)
    except DrillInterrupted as exc:
        results, interrupted = exc.results, True
    for result in results:
        if result["run_id"] in written:
            result.update(report=written[result["run_id"]]["report"],
                          report_html=written[result["run_id"]]["report_html"])
        else:
            write_report(data_dir, result, lab)
    if args.json:
        print(json.dumps({"drills": [_public(r) for r in results]}))
    else:
        print(summary(results))
    if interrupted:
        print("obslab: interrupted; the drills' faults are cleared", file=sys.stderr)
        return 130
    return 0 if results and all(r["passed"] for r in results) and len(results) == len(drills) else 1


def _public(result: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in result.items() if key not in ("timeline", "story")}


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def summary(results: list[dict[str, Any]]) -> str:
    rows = []
    for r in results:
        for a in r["alerts"] or [{}]:
            rows.append([r["name"], "pass" if r["passed"] else "FAIL", a.get("alert", "-"), a.get("receiver", "-"),
                         _num(a.get("fired_seconds")), _num(a.get("notified_seconds")), _num(a.get("floor_seconds")),
                         "-" if a.get("ratio") is None else f"{a['ratio']:.2f}", _num(a.get("resolved_seconds"))])
    lines = [text_table(["DRILL", "RESULT", "ALERT", "RECEIVER", "FIRED S", "NOTIFIED S", "FLOOR S",
                         "NOTIFIED/FLOOR", "RESOLVED S"], rows), ""]
    for r in results:
        if r["unexpected_detail"]:
            lines.append(f"{r['name']}: unexpected alerts: {', '.join(r['unexpected_detail'])}")
        for problem in r["problems"]:
            lines.append(f"{r['name']}: {problem}")
        for note in r.get("notes", []):
            lines.append(f"{r['name']}: note: {note}")
        lines.append(f"{r['name']}: report {r.get('report_html') or r.get('report')}")
    passed = sum(1 for r in results if r["passed"])
    lines.append(f"{passed} of {len(results)} drill(s) passed")
    return "\n".join(lines)
