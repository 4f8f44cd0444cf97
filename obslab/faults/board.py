"""How a process sees the faults: a local copy of the injector's list, refreshed in the background.

Every process that applies faults (the banking services, the IIS mock, the load generator)
keeps a :class:`FaultBoard`, so a request never waits on the network to learn its faults, and an
injector that is down leaves the last known faults in place only until they expire.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.request
from collections.abc import Callable
from typing import Any

from obslab import conventions as c
from obslab import settings
from obslab.faults.model import POLL_PATH, Fault

log = logging.getLogger(__name__)


class FaultBoard:
    """This process's view of the active faults, refreshed in the background.

    >>> board = FaultBoard(None)                    # no injector configured: never any faults
    >>> board.find(c.FaultKind.LATENCY, "accounts") is None
    True
    """

    def __init__(self, injector_url: str | None, *, poll_seconds: float = 1.0, timeout: float = 2.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.injector_url = injector_url.rstrip("/") if injector_url else None
        self.poll_seconds = poll_seconds
        self.timeout = timeout
        self.clock = clock
        self._faults: tuple[Fault, ...] = ()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.last_success: float | None = None
        self.last_error: str | None = None
        self._signer: Any = None

    def authenticate_with(self, signer: Any) -> FaultBoard:
        """Poll with ``signer``'s service token (the injector answers fault followers only).
        The first component that sets one keeps it: one board per process."""
        if self._signer is None:
            self._signer = signer
        return self

    # --- reading (cheap: no I/O) -----------------------------------------------------------

    def active(self, kind: c.FaultKind | None = None, target: str | None = None) -> list[Fault]:
        self._ensure_started()
        now = self.clock()
        return [f for f in self._faults
                if f.active(now) and (kind is None or f.kind == kind) and (target is None or f.target == target)]

    def find(self, kind: c.FaultKind, target: str, route: str | None = None) -> Fault | None:
        """The newest active fault of ``kind`` on ``target`` that applies to ``route``."""
        for fault in reversed(self.active(kind, target)):
            if fault.applies_to_route(route):
                return fault
        return None

    # --- refreshing ----------------------------------------------------------------------------

    def replace(self, faults: list[Fault]) -> None:
        with self._lock:
            self._faults = tuple(sorted(faults, key=lambda f: f.created_at))

    def refresh(self) -> bool:
        """Fetch the faults once; on failure keep the last known ones (they still expire)."""
        if self.injector_url is None:
            return False
        try:
            # urllib, not requests: the poll must not show up as a span in every service's traces.
            headers = self._signer.headers(c.FAULT_INJECTOR) if self._signer is not None else {}
            poll = urllib.request.Request(f"{self.injector_url}{POLL_PATH}", headers=headers)
            with urllib.request.urlopen(poll, timeout=self.timeout) as response:
                data = json.loads(response.read())
            self.replace([Fault.from_json(item) for item in data])
        except Exception as exc:  # the injector being down must never break the business
            if self.last_error is None:
                log.warning("fault injector unreachable; keeping the last known faults until they expire",
                            extra={"injector": self.injector_url, "error": str(exc)})
            self.last_error = str(exc)
            return False
        if self.last_error is not None:
            log.info("fault injector reachable again", extra={"injector": self.injector_url})
        self.last_error = None
        self.last_success = self.clock()
        return True

    def _ensure_started(self) -> None:
        if self._thread is not None or self.injector_url is None:
            return
        with self._lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._run, name="fault-board", daemon=True)
            self._thread.start()

    def start(self) -> FaultBoard:
        self._ensure_started()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.refresh()
            self._stop.wait(self.poll_seconds)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


_board: FaultBoard | None = None
_board_lock = threading.Lock()


def process_board() -> FaultBoard:
    """The board of this process, reading ``OBSLAB_FAULT_INJECTOR_URL`` (unset: no faults). Who
    polls proves itself with :meth:`FaultBoard.authenticate_with`."""
    global _board
    with _board_lock:
        if _board is None:
            _board = FaultBoard(settings.FAULT_INJECTOR_URL.get(), poll_seconds=settings.FAULT_POLL_SECONDS.get())
        return _board
