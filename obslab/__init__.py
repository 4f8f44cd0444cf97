"""obslab: an OpenTelemetry-native observability lab for a banking platform."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("obslab")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"
