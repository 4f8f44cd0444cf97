"""What a NAB run prints and draws: our scores beside NAB's published scoreboard.

The published rows are copied from the Scoreboard table of numenta/NAB's README.md ("NAB
v1.1" README; the rows from Twitter ADVec down read the same in the v1.0 README). A score from
this benchmark is comparable with them only when the whole corpus (58 files) was scored: the
scores are normalised over the windows of the scored files, so a subset has its own scale.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from obslab.ml.nab.corpus import Corpus
from obslab.ml.nab.scoring import PROFILES

PROFILE_NAMES = tuple(p.name for p in PROFILES)
PROFILE_TITLES = {"standard": "Standard", "reward_low_FP_rate": "Reward low FP", "reward_low_FN_rate": "Reward low FN"}
PUBLISHED_SOURCE = "numenta/NAB README.md, Scoreboard (NAB v1.1)"


@dataclass(frozen=True)
class PublishedRow:
    """One scoreboard row; a range (Numenta HTM over random seeds) is (high, low)."""

    detector: str
    standard: tuple[float, float]
    reward_low_FP_rate: tuple[float, float]
    reward_low_FN_rate: tuple[float, float]

    def value(self, profile: str) -> float:
        return getattr(self, profile)[0]

    def text(self, profile: str) -> str:
        high, low = getattr(self, profile)
        return f"{high:.1f}" if high == low else f"{high:.1f}-{low:.1f}"


def _row(detector: str, standard: float | tuple, low_fp: float | tuple, low_fn: float | tuple) -> PublishedRow:
    def pair(value: float | tuple) -> tuple[float, float]:
        return value if isinstance(value, tuple) else (value, value)
    return PublishedRow(detector, pair(standard), pair(low_fp), pair(low_fn))


PUBLISHED_SCOREBOARD: tuple[PublishedRow, ...] = (
    _row("Perfect", 100.0, 100.0, 100.0),
    _row("ARTime", 74.9, 65.1, 80.4),
    _row("Numenta HTM", (70.5, 69.7), (62.6, 61.7), (75.2, 74.2)),
    _row("CAD OSE", 69.9, 67.0, 73.2),
    _row("earthgecko Skyline", 58.2, 46.2, 63.9),
    _row("KNN CAD", 58.0, 43.4, 64.8),
    _row("Relative Entropy", 54.6, 47.6, 58.8),
    _row("Random Cut Forest", 51.7, 38.4, 59.7),
    _row("Twitter ADVec v1.0.0", 47.1, 33.6, 53.5),
    _row("Windowed Gaussian", 39.6, 20.9, 47.4),
    _row("Etsy Skyline", 35.7, 27.1, 44.5),
    _row("Bayesian Changepoint", 17.7, 3.2, 32.2),
    _row("EXPoSE", 16.4, 3.2, 26.9),
    _row("Random", 11.0, 1.2, 19.5),
    _row("Null", 0.0, 0.0, 0.0),
)


def subset_caveat(corpus: Corpus) -> str | None:
    """One line when the scored files are not the whole labelled corpus, else None."""
    if corpus.complete:
        return None
    missing: dict[str, int] = {}
    for path in corpus.missing:
        category = path.split("/", 1)[0]
        missing[category] = missing.get(category, 0) + 1
    which = ", ".join(f"{category} ({count})" for category, count in sorted(missing.items()))
    return (f"scored on {len(corpus.files)} of {len(corpus.labelled)} files: not comparable with the "
            f"published table (absent: {which})")


def format_scores(title: str, scores: Mapping[str, Mapping[str, float]], *,
                  published: Sequence[PublishedRow] = (), notes: Sequence[str] = ()) -> str:
    """A table of the three profile scores per detector, ranked by the standard profile,
    with the published rows (marked ``NAB``) interleaved at their places."""
    rows: list[tuple[float, str, str, list[str]]] = []
    for name, by_profile in scores.items():
        rows.append((by_profile["standard"], name, "obslab", [f"{by_profile[p]:.1f}" for p in PROFILE_NAMES]))
    for row in published:
        rows.append((row.value("standard"), row.detector, "NAB", [row.text(p) for p in PROFILE_NAMES]))
    rows.sort(key=lambda r: -r[0])
    width = max([len(r[1]) for r in rows] + [24])
    header = "".join(f"{PROFILE_TITLES[p]:>15}" for p in PROFILE_NAMES)
    lines = [title, f"  {'detector':<{width}} {'source':<7}{header}"]
    for _, name, source, texts in rows:
        lines.append(f"  {name:<{width}} {source:<7}" + "".join(f"{t:>15}" for t in texts))
    lines += [f"  {note}" for note in notes]
    return "\n".join(lines)


def save_plot(path: Path, scores: Mapping[str, Mapping[str, float]],
              lab: Mapping[str, Mapping[str, float]] | None = None, *, title: str = "",
              published: Sequence[PublishedRow] = PUBLISHED_SCOREBOARD) -> Path:
    """One panel per profile: a bar per detector (and one for the lab's incidents), with the
    published scoreboard as labelled reference lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    detectors = list(scores)
    series = [("NAB corpus", scores, "#4c72b0")] + ([("lab incidents", lab, "#dd8452")] if lab else [])
    figure, axes = plt.subplots(1, len(PROFILE_NAMES), figsize=(5.2 * len(PROFILE_NAMES), 5.5), sharey=True)
    values = [v[p] for _, group, _ in series for v in group.values() for p in PROFILE_NAMES]
    low = min([0.0, *values]) - 5
    high = max([100.0, *values]) + 5
    bar = 0.8 / len(series)
    for axis, profile in zip(axes, PROFILE_NAMES):
        ordered = sorted(published, key=lambda r: r.value(profile))
        for row, y in zip(ordered, _spread([r.value(profile) for r in ordered], (high - low) / 40)):
            axis.axhline(row.value(profile), color="0.6", linestyle="--", linewidth=0.7, zorder=0)
            axis.text(len(detectors) - 0.45, y, f" {row.detector} {row.text(profile)}",
                      fontsize=6, color="0.35", va="center", ha="left", clip_on=False)
        for offset, (label, group, color) in enumerate(series):
            xs = [i - 0.4 + bar * (offset + 0.5) for i in range(len(detectors))]
            heights = [group[d][profile] if d in group else 0.0 for d in detectors]
            axis.bar(xs, heights, bar, label=label, color=color, zorder=2)
            for x, h in zip(xs, heights):
                axis.text(x, h, f"{h:.1f}", fontsize=7, ha="center", va="bottom" if h >= 0 else "top")
        axis.set_title(PROFILE_TITLES[profile])
        axis.set_xticks(range(len(detectors)), detectors, rotation=30, ha="right")
        axis.set_xlim(-0.6, len(detectors) - 0.4)
        axis.set_ylim(low, high)
        axis.axhline(0, color="black", linewidth=0.8)
    axes[0].set_ylabel("NAB score (0 = null detector, 100 = perfect)")
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=len(series), fontsize=8)
    figure.suptitle(title or "NAB scores; dashed: published scoreboard (NAB v1.1)", fontsize=10)
    # A fixed layout: tight_layout costs more than drawing, and the room right of each panel
    # is for the scoreboard's labels.
    figure.subplots_adjust(left=0.05, right=0.9, bottom=0.2, top=0.88, wspace=0.5)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def _spread(values: Sequence[float], gap: float) -> list[float]:
    """Label heights for ascending ``values``: each at least ``gap`` above the one below."""
    heights: list[float] = []
    for value in values:
        heights.append(value if not heights else max(value, heights[-1] + gap))
    return heights
