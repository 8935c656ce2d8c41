"""I/O adapters: lake storage, warehouse, notifier. Chosen from settings in ``resources.py``."""
