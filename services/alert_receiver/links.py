"""alert-receiver: which links a notification may show.

What the receiver shows is what the on-call acts on: a forged or misconfigured alert must not put
a link to another site in front of them. ``runbook_url`` and ``dashboard_url`` are shown only when
they point at the lab's own hosts (:class:`LinkPolicy`, ``$OBSLAB_LINK_HOSTS`` adds more); a
foreign link is shown empty and named in the alert's ``links_removed``. The payload is stored as
received (the evidence of what was attempted) and filtered on every read, so no view ever shows
a foreign link.

A runbook link to this server's own runbook page is shown as a relative link to it; the runbook
routes' path and page names are therefore defined here (:mod:`.runbooks` serves them).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from obslab import conventions as c
from obslab import topology
from obslab import settings
from obslab.settings import ConfigError

RUNBOOKS_PATH = "/runbooks/"
# A page is an alert name (UpperCamelCase, or README) plus .md: nothing that can name a path.
_RUNBOOK_PAGE = re.compile(r"[A-Za-z0-9]+\.md")   # used with fullmatch: "$" would let "X.md\n" through

# The annotations shown as links, and the hosts they may point at besides the lab's own.
LINK_ANNOTATIONS = (c.A_RUNBOOK_URL, c.A_DASHBOARD_URL)


# --- links: only to the lab's own hosts --------------------------------------------------------

# A URL a browser reads the way urllib does: printable ASCII, no space and no backslash (WHATWG
# browsers take "\" for "/": "http://evil.example\@localhost:8095/" goes to evil.example).
_URL_CHARS = re.compile(r"[\x21-\x5b\x5d-\x7e]+")
# host[:port] without user info: a DNS name or an IPv4 address.
_NETLOC = re.compile(r"(?P<host>[a-z0-9](?:[a-z0-9.-]{0,251}[a-z0-9])?)(?::(?P<port>[0-9]{1,5}))?")
_DEFAULT_PORTS = {"http": 80, "https": 443}


def _netloc(text: str, what: str) -> tuple[str, int | None]:
    match = _NETLOC.fullmatch(text.strip().lower())
    port = int(match.group("port")) if match and match.group("port") else None
    if match is None or (port is not None and not 0 < port < 65536):
        raise ConfigError(f"{what}: {text.strip()!r} is not host[:port] (a name or IPv4 address, "
                          "optionally a port; no scheme, path or user)")
    return match.group("host"), port


@dataclass(frozen=True)
class LinkPolicy:
    """Where a notification's ``runbook_url`` and ``dashboard_url`` may point.

    A forged or misconfigured alert must not put a link to another site in front of the on-call
    (phishing: "the runbook says: log in here"). Links are kept only when they are http(s) to a
    host of the lab: the runbooks' and dashboards' hosts of the conventions (localhost:8095,
    localhost:3000), this server at 127.0.0.1 or localhost on its port with the lab's offset (a
    lab beside the default one links its runbooks there), and ``$OBSLAB_LINK_HOSTS``
    (comma-separated host[:port]; a host without a port stands for the scheme's default port).
    """

    hosts: frozenset[tuple[str, int | None]]
    # Where this server is reached: a runbook URL on one of these is served here.
    own: frozenset[tuple[str, int]] = field(default_factory=frozenset)

    @classmethod
    def from_settings(cls) -> LinkPolicy:
        port = settings.port(c.ALERT_RECEIVER)
        own = {("127.0.0.1", port), ("localhost", port)}
        runbooks = _netloc(urlsplit(topology.RUNBOOK_BASE_URL).netloc, "RUNBOOK_BASE_URL")
        dashboards = _netloc(urlsplit(topology.DASHBOARD_BASE_URL).netloc, "DASHBOARD_BASE_URL")
        hosts: set[tuple[str, int | None]] = {*own, runbooks, dashboards}
        for entry in settings.LINK_HOSTS.get().split(","):
            if entry.strip():
                hosts.add(_netloc(entry, settings.LINK_HOSTS.name))
        # The conventions' runbook URL is an alert-receiver's page: shown as this server's copy.
        own_runbooks = {*own, (runbooks[0], runbooks[1] or _DEFAULT_PORTS["http"])}
        return cls(frozenset(hosts), frozenset(own_runbooks))

    @staticmethod
    def _where(url: str) -> tuple[str, int, bool] | None:
        """(host, port, whether the port is the scheme's default) of an http(s) URL that every
        reader resolves alike; None otherwise (never an exception: stored data is shown with it)."""
        if not _URL_CHARS.fullmatch(url):
            return None
        try:
            parts = urlsplit(url)
        except ValueError:   # e.g. "http://[evil/": an unclosed IPv6 bracket
            return None
        if parts.scheme not in _DEFAULT_PORTS:
            return None
        match = _NETLOC.fullmatch(parts.netloc.lower())
        if match is None:
            return None
        default = _DEFAULT_PORTS[parts.scheme]
        port = int(match.group("port")) if match.group("port") else default
        return match.group("host"), port, port == default

    def allows(self, url: str) -> bool:
        where = self._where(url)
        if where is None:
            return False
        host, port, default = where
        return (host, port) in self.hosts or (default and (host, None) in self.hosts)

    def local_runbook(self, alertname: str, url: str) -> str | None:
        """This server's path of the alert's runbook when ``url`` is the lab's runbook of that very
        alert here (``obslab.conventions.runbook_url``, or the same page at this server's own
        address); relative, so it works at any address or port offset."""
        page = f"{alertname}.md"
        where = self._where(url)
        if not _RUNBOOK_PAGE.fullmatch(page) or where is None or where[:2] not in self.own:
            return None
        parts = urlsplit(url)
        return RUNBOOKS_PATH + page if parts.path == RUNBOOKS_PATH + page and not parts.query \
            and not parts.fragment else None

    def removed(self, annotations: dict[str, Any]) -> list[str]:
        """The link annotations of ``annotations`` that point elsewhere."""
        return [name for name in LINK_ANNOTATIONS
                if annotations.get(name) and not self.allows(str(annotations[name]))]
