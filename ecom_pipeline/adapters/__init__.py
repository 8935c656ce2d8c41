"""I/O adapters: lake, warehouse, notifier, metrics; chosen from settings in ``resources.py``."""
