"""Everything the repository commits that code writes: one module (or package) per artefact, each
with ``generated_files()`` mapping repository paths to the functions that produce them;
:mod:`.generate` runs them all (``obslab generate``, ``--check``).

The alerting spec (:mod:`obslab.rules`) and the settings table (:mod:`obslab.settings`) generate
files too, but stay where they are: both are read at run time (drills, Alertmanager's
configuration, every component's settings), and generating is the smaller part of their job.
"""
