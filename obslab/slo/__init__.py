"""Service level objectives as a reader sees them: the error-budget report (``obslab slo report``,
:mod:`obslab.slo.report`). The SLOs themselves are defined in ``prometheus/spec/slos.yml`` and
turned into rules by :mod:`obslab.rules.slo`."""
