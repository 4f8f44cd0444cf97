"""Every name other code, dashboards, rules and scripts depend on, and nothing else.

Components, HTTP headers, Prometheus metric and label names, span attribute keys and alerting
names are spelled here and nowhere else, one module per kind (:mod:`.components`, :mod:`.http`,
:mod:`.metrics`, :mod:`.faults`, :mod:`.iis`, :mod:`.loadgen`, :mod:`.receiver`,
:mod:`.attributes`, :mod:`.alerting`, :mod:`.ml`, :mod:`.performance`); this package re-exports them all, so
``from obslab import conventions as c`` reads ``c.GATEWAY`` wherever a name is defined. Metric
names that come from the seed notes (``transaction_*``) must not drift: dashboards and rules of
both runtimes are written against them.
"""

from obslab.conventions.alerting import *  # noqa: F401,F403
from obslab.conventions.attributes import *  # noqa: F401,F403
from obslab.conventions.components import *  # noqa: F401,F403
from obslab.conventions.faults import *  # noqa: F401,F403
from obslab.conventions.http import *  # noqa: F401,F403
from obslab.conventions.iis import *  # noqa: F401,F403
from obslab.conventions.loadgen import *  # noqa: F401,F403
from obslab.conventions.metrics import *  # noqa: F401,F403
from obslab.conventions.ml import *  # noqa: F401,F403
from obslab.conventions.performance import *  # noqa: F401,F403
from obslab.conventions.receiver import *  # noqa: F401,F403
