#!/usr/bin/env python3
"""Docker HEALTHCHECK of the obslab image: exit 0 when the component answers its health path.

docker-compose.yml passes the URL (``obslab-healthcheck http://127.0.0.1:8080/ready``). A bare
``docker run`` of the image passes none: the component is then read from the container's main
command (``obslab serve NAME``, PID 1) and its port and health path from ``obslab.topology``,
so the image's own HEALTHCHECK works for whichever component it runs.
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request
from pathlib import Path

TIMEOUT_SECONDS = 4.0


def url_for_command(argv: list[str]) -> str:
    """``[..., "obslab", "serve", "gateway"]`` -> ``http://127.0.0.1:8080/ready``."""
    try:
        name = argv[argv.index("serve") + 1]
    except (ValueError, IndexError):
        raise SystemExit(f"cannot tell the component from {' '.join(argv)!r}; pass the URL") from None
    from obslab import settings, topology

    return f"http://127.0.0.1:{settings.port(name)}{topology.component(name).health_path}"


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        url = argv[1]
    else:
        url = url_for_command(Path("/proc/1/cmdline").read_bytes().decode().split("\0"))
    # Straight to the loopback address: a proxy from the environment must not answer for it.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=TIMEOUT_SECONDS) as response:
            return 0 if response.status == 200 else 1
    except (urllib.error.URLError, OSError) as exc:
        print(f"{url}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
