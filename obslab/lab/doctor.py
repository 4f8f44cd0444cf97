"""``obslab doctor``: what this machine lacks for the native lab and its tests, and the fix.

With ``--install`` it fixes what it can: as root on Debian it installs the OS packages, and it
starts a local MariaDB that is installed but stopped. Otherwise it prints the exact command.

Some packages only the tests need (a headless browser): they are checked and installed only for
the test suite, i.e. with ``--mariadb`` (what ``make test`` runs), not for ``make up``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass

APT_FLAGS = ["-y", "-qq", "--no-install-recommends"]


@dataclass(frozen=True)
class Requirement:
    package: str                 # Debian package that provides it
    binaries: tuple[str, ...]
    needed_for: str
    tests_only: bool = False     # checked and installed only for the test suite


REQUIREMENTS = (
    Requirement("prometheus", ("prometheus", "promtool"), "metrics storage, exemplars, rule checks"),
    Requirement("prometheus-alertmanager", ("prometheus-alertmanager", "amtool"), "alert routing"),
    Requirement("chromium", ("chromium",), "tests that load drill reports in a headless browser",
                tests_only=True),
)

MARIADB_DAEMON = "/usr/sbin/mariadbd"
MARIADB_START = ["start-stop-daemon", "--start", "--oknodo", "--background", "--exec", MARIADB_DAEMON]


def missing_requirements(for_tests: bool = True) -> list[Requirement]:
    return [req for req in REQUIREMENTS if (for_tests or not req.tests_only)
            and any(shutil.which(b) is None for b in req.binaries)]


def install_command(requirements: list[Requirement]) -> str:
    packages = " ".join(req.package for req in requirements)
    return f"sudo apt-get update && sudo apt-get install -y --no-install-recommends {packages}"


def can_install() -> bool:
    return os.geteuid() == 0 and shutil.which("apt-get") is not None


def install(requirements: list[Requirement]) -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    packages = [req.package for req in requirements]
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", *APT_FLAGS, *packages], check=True, env=env)


def mariadb_reachable(host: str = "127.0.0.1", port: int = 3306) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def start_mariadb(wait_seconds: float = 30.0) -> bool:
    if not (os.path.exists(MARIADB_DAEMON) and os.geteuid() == 0):
        return False
    subprocess.run(MARIADB_START, check=False)
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        if mariadb_reachable():
            return True
        time.sleep(0.5)
    return False


def run(*, install_missing: bool, need_mariadb: bool, for_tests: bool | None = None, out=sys.stdout) -> int:
    """Returns 0 when everything needed is (now) present, 1 otherwise.

    ``for_tests``: also what only the tests need; by default when MariaDB is asked for (the test
    suite's ``obslab doctor --install --mariadb``)."""
    ok = True
    for_tests = need_mariadb if for_tests is None else for_tests
    missing = missing_requirements(for_tests)
    if missing and install_missing and can_install():
        names = ", ".join(req.package for req in missing)
        print(f"doctor: installing {names} ...", file=out, flush=True)
        try:
            install(missing)
        except (subprocess.CalledProcessError, OSError) as exc:
            print(f"doctor: installing failed ({exc}); run: {install_command(missing)}", file=out)
        missing = missing_requirements(for_tests)
    for req in missing:
        ok = False
        print(f"doctor: missing {', '.join(b for b in req.binaries if shutil.which(b) is None)} "
              f"(package {req.package}, for {req.needed_for})", file=out)
    if missing:
        print(f"doctor: install with: {install_command(missing)}", file=out)
    if need_mariadb and not mariadb_reachable():
        if install_missing and start_mariadb():
            print("doctor: started MariaDB on 127.0.0.1:3306", file=out)
        else:
            ok = False
            print("doctor: MariaDB is not reachable on 127.0.0.1:3306; start it with: "
                  f"{' '.join(MARIADB_START)}", file=out)
    if ok:
        print("doctor: everything needed is present", file=out)
    return 0 if ok else 1
