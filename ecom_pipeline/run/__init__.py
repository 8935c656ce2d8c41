"""A run of the pipeline: what flows and tasks share.

Owns the adapters chosen by configuration for one run (``resources``), the run-level stages
that gather a day's work and account for it (``ingest``, ``validate``, ``load``), the run
report and manifest built from the stages' results (``report``), the days of a backfill
(``backfill``), the notifier (``notifier``), and the metrics sink (``metrics``). May import
every other part of the package; nothing in the package imports it except the CLI.
"""
