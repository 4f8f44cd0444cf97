"""Faults, a contract of the whole lab: the model (:mod:`.model`: kinds, targets, parameters, the
wire form) and the board every fault-following process reads them from (:mod:`.board`)."""
