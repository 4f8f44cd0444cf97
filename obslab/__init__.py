"""obslab: an OpenTelemetry-native observability lab for a banking platform."""

from __future__ import annotations


def __getattr__(name: str) -> str:
    # Looked up on first use: importlib.metadata costs every process of the lab, launchers
    # included, 20-50 ms of start-up for a string that few of them ever read.
    if name != "__version__":
        raise AttributeError(f"module 'obslab' has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    global __version__
    try:
        __version__ = version("obslab")
    except PackageNotFoundError:  # running from a source tree that is not installed
        __version__ = "0.0.0+unknown"
    return __version__
