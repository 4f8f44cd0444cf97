"""The cost model: unit prices (``cost-model.yml`` beside this file, or ``OBSLAB_COST_MODEL``)
turned into a monthly figure per component from what the lab measures of it.

Monthly cost of a component = CPU cores it uses on average x ``cpu_core_hour`` x hours a month
+ resident GiB x ``memory_gib_hour`` x hours a month + its active series / 1000 x
``series_per_thousand_month``. Measured now and extrapolated to a month: a lab's traffic
follows a day's shape, so read it over a day before quoting it.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from obslab import settings

DEFAULT_PATH = Path(__file__).with_name("cost-model.yml")
GIB = 1024 ** 3


class CostModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    currency: str = Field(pattern=r"^[A-Z]{3}$")
    hours_per_month: float = Field(gt=0)
    cpu_core_hour: float = Field(ge=0)
    memory_gib_hour: float = Field(ge=0)
    series_per_thousand_month: float = Field(ge=0)

    def monthly(self, cpu_cores: float, memory_bytes: float, series: float) -> dict[str, float]:
        """Monthly cost by resource (cpu, memory, series) of a component using these now."""
        return {
            "cpu": cpu_cores * self.cpu_core_hour * self.hours_per_month,
            "memory": memory_bytes / GIB * self.memory_gib_hour * self.hours_per_month,
            "series": series / 1000.0 * self.series_per_thousand_month,
        }


def load(path: str | Path | None = None) -> CostModel:
    path = Path(path or settings.COST_MODEL.get() or DEFAULT_PATH)
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise settings.ConfigError(f"cost model {path}: cannot read: {exc}") from None
    try:
        return CostModel(**(raw if isinstance(raw, dict) else {}))
    except ValidationError as exc:
        first = exc.errors()[0]
        raise settings.ConfigError(f"cost model {path}: {'.'.join(map(str, first['loc']))}: {first['msg']}") from None
