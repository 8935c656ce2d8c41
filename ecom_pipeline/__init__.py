"""ecom_pipeline: the pipeline's logic and adapters, grouped by layer.

``lake`` (keys, storage, locks, intake), ``contracts`` (what a valid row is), ``silver``
(Delta tables and the duplicate rule), ``gold`` (aggregates), ``warehouse`` (loading gold),
``run`` (what a flow run shares: adapters, report, notifier, metrics), plus ``settings``,
``errors`` and the ``cli``. The Prefect flows in ``flows/`` and the tasks in ``tasks/`` are
thin wrappers over it.
"""

__version__ = "0.1.0"
