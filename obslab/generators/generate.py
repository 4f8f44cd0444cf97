"""Files generated from code and committed: ``obslab generate`` writes them, ``--check`` (and a
test) fails when a committed copy differs from what the generator produces now."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from obslab import rules, settings
from obslab.generators import amconfig, collectorconfig, compose, grafana, promconfig

# Every generator: a module whose generated_files() maps repository paths to their producers.
GENERATORS = (promconfig, rules, amconfig, compose, collectorconfig, grafana, settings)


def generated_files() -> dict[str, Callable[[], str]]:
    """Repository-relative path -> function producing its current content."""
    files: dict[str, Callable[[], str]] = {}
    for generator in GENERATORS:
        files.update(generator.generated_files())
    return files


def stale_files(root: Path | None = None) -> list[str]:
    root = root or settings.repo_root()
    stale = []
    for relative, produce in generated_files().items():
        path = root / relative
        if not path.exists() or path.read_text() != produce():
            stale.append(relative)
    return stale


def write_all(root: Path | None = None) -> list[str]:
    root = root or settings.repo_root()
    written = []
    for relative, produce in generated_files().items():
        path = root / relative
        content = produce()
        if not path.exists() or path.read_text() != content:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)
            written.append(relative)
    return written


def run(*, check: bool, command: str = "obslab generate") -> int:
    """``obslab generate`` / ``obslab rules generate``: write, or with ``check`` list what is stale
    and say which ``command`` writes it."""
    if check:
        stale = stale_files()
        for path in stale:
            print(f"stale: {path} (run `{command}`)")
        return 1 if stale else 0
    for path in write_all():
        print(f"wrote {path}")
    return 0
