"""``obslab backup create|verify|restore|list``: the whole state of a native lab in one verified
archive, and back (what is in it, and why a backup taken under traffic is consistent for money:
:mod:`obslab.lab.backup`). ``obslab backup schedule`` is what ``obslab up --backup-every`` runs.

With ``--json`` each prints one JSON object on stdout and no progress (a failure: exit status 2,
one line ``obslab: error: ...`` on stderr, nothing on stdout)::

    create   {"archive": path, "size_bytes": int, "seconds": float, "members": int,
              "created_at": "2026-12-07T04:29:00.123Z", "database_backend": "sqlite" | "mysql" | "mysql+sqlite",
              "write_pause_ms": float | null, "prometheus": {"method": ..., ...}, "secrets": "plaintext" | "absent",
              "ledger": LEDGER | null, "warnings": [str]}
    verify   {"file": path, "ok": true, "created_at": str, "obslab_version": str, "members": int,
              "size_bytes": int (unpacked), "database_backend": str, "secrets": str, "ledger": LEDGER | null}
    restore  {"data_dir": path, "seconds": float, "backup_created_at": str, "members": int,
              "database_backend": str, "previous_state": path | null (--force: the replaced directory),
              "previous_schemas": [str] (--force on MySQL: schemas holding the replaced tables),
              "ledger": LEDGER | null, "warnings": [str]}
    list     {"directory": path, "backups": [{"path": path, "size_bytes": int, "created_at": str | null,
              "scheduled": bool, "status": "verified" | "manifest ok" | what is wrong, "ok": bool}]}
              (newest first; exit status 1 if any is not ok)

    LEDGER = {"accounts": int, "movements": int, "sum_minor": int (0 when sound), "balance_mismatches": int,
              "half_movements": int, "sound": bool}
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from pathlib import Path

from obslab import settings
from obslab.errors import CliError

HELP = "back up a lab's state into one verified archive, check one, restore one, list them"


def _data_dir(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--data-dir", metavar="DIR", help=f"{what} (default: $OBSLAB_DATA_DIR or .obslab/)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="backup_action", required=True, metavar="ACTION")
    create = actions.add_parser("create", help="back up the lab (running or stopped) into one .tar.gz")
    _data_dir(create, "the lab to back up")
    create.add_argument("--out", metavar="FILE",
                        help="the archive to write (default: <data dir>/backups/obslab-backup-<UTC time>.tar.gz, "
                             f"or ${settings.BACKUP_DIR.name})")
    create.add_argument("--json", action="store_true", help="print one JSON object instead of progress")

    verify = actions.add_parser("verify", help="check every member of an archive against its manifest")
    verify.add_argument("file", metavar="FILE")
    verify.add_argument("--json", action="store_true", help="print the manifest's summary as JSON")

    restore = actions.add_parser("restore", help="restore an archive into a stopped lab or a new directory")
    restore.add_argument("file", metavar="FILE")
    _data_dir(restore, "where to restore: a new or empty directory, or a stopped lab's with --force")
    restore.add_argument("--force", action="store_true",
                         help="replace the state of the stopped lab in --data-dir (it is kept beside it, "
                              "as DIR.replaced-<time>) and, with MySQL, the tables in its schemas (kept in "
                              "obslab_replaced_* schemas); also restores a copy whose ledger is not sound")
    restore.add_argument("--json", action="store_true", help="print one JSON object instead of progress")

    listing = actions.add_parser("list", help="the backups in the backup folder, newest first")
    _data_dir(listing, "the lab whose backups to list")
    listing.add_argument("--verify", action="store_true", help="check each archive whole (slower)")
    listing.add_argument("--json", action="store_true", help="machine-readable output")

    schedule = actions.add_parser("schedule", help="take a backup every --every, keeping --keep "
                                                   "(what `obslab up --backup-every` runs under supervisord)")
    _data_dir(schedule, "the lab to back up")
    schedule.add_argument("--every", required=True, metavar="DURATION", help="e.g. 6h")
    schedule.add_argument("--keep", type=int, default=None, metavar="N",
                          help=f"scheduled backups to keep (default: ${settings.BACKUP_KEEP.name} or "
                               f"{settings.BACKUP_KEEP.default})")


def run(args: argparse.Namespace) -> int:
    from obslab.lab import backup

    data_dir = settings.data_dir(args.data_dir) if hasattr(args, "data_dir") else None
    # Progress shows as it happens, also when piped (`| tee`, a CI log).
    say = (lambda _text: None) if getattr(args, "json", False) else (lambda text: print(text, flush=True))

    if args.backup_action == "create":
        assert data_dir is not None
        result = backup.create(data_dir, Path(args.out) if args.out else None, say=say)
        if args.json:
            print(json.dumps(result.as_dict()))
        return 0

    if args.backup_action == "verify":
        manifest = backup.verify(Path(args.file).expanduser())
        summary = {"file": args.file, "ok": True, "created_at": manifest["created_at"],
                   "obslab_version": manifest["obslab_version"], "members": len(manifest["members"]),
                   "size_bytes": sum(m["size"] for m in manifest["members"]),
                   "database_backend": manifest["database_backend"], "secrets": manifest["secrets"],
                   "ledger": manifest["databases"].get("accounts", {}).get("ledger")}
        if args.json:
            print(json.dumps(summary))
        else:
            print(f"{args.file}: OK: {summary['members']} members match the manifest (taken {summary['created_at']} "
                  f"by obslab {summary['obslab_version']}; databases: {summary['database_backend']}; "
                  f"secrets: {summary['secrets']}; {backup.describe_ledger(summary['ledger'])})")
        return 0

    if args.backup_action == "restore":
        assert data_dir is not None
        result = backup.restore(Path(args.file), data_dir, force=args.force, say=say)
        if args.json:
            print(json.dumps(result.as_dict()))
            for warning in result.warnings:
                print(f"obslab: warning: {warning}", file=sys.stderr)
        return 0

    if args.backup_action == "list":
        assert data_dir is not None
        directory = backup.backup_dir(data_dir)
        found = backup.list_backups(directory, check=args.verify)
        if args.json:
            print(json.dumps({"directory": str(directory), "backups": [info.as_dict() for info in found]}))
            return 0 if all(info.ok for info in found) else 1
        if not found:
            print(f"No backups in {directory}; take one with `obslab backup create`.", file=sys.stderr)
            return 0
        rows = [[info.path.name, info.created_at or "?", backup._size(info.size),
                 "scheduled" if info.scheduled else "manual", info.status] for info in found]
        widths = [max(len(str(row[i])) for row in rows + [["NAME", "CREATED (UTC)", "SIZE", "KIND", "CHECK"]])
                  for i in range(5)]
        print(f"{directory}:")
        for row in [["NAME", "CREATED (UTC)", "SIZE", "KIND", "CHECK"], *rows]:
            print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip())
        return 0 if all(info.ok for info in found) else 1

    if args.backup_action == "schedule":
        assert data_dir is not None
        every = settings.parse_duration(args.every)
        keep = args.keep if args.keep is not None else settings.BACKUP_KEEP.get()
        if keep < 1:
            raise CliError("--keep must be at least 1")
        stop = threading.Event()
        backup.stop_on_signals(stop)
        try:
            backup.run_schedule(data_dir, every, keep, stop=stop, say=lambda text: print(text, flush=True))
        except KeyboardInterrupt:   # the lab stopping (SIGTERM from supervisord): not an error
            print("scheduled backups stopped", flush=True)
        return 0
    raise CliError(f"unknown action {args.backup_action!r}")
