"""A run of the pipeline: what flows and tasks share.

Owns the adapters chosen by configuration for one run (``resources``), the run report and
manifest (``report``), the notifier (``notifier``), and the metrics sink (``metrics``). May
import every other part of the package; nothing in the package imports it except the CLI.
"""
