"""ecom_pipeline: the pure logic (contracts, dedup, partitioning, aggregates) and the I/O adapters
behind the Prefect flows in ``flows/`` and the tasks in ``tasks/``."""

__version__ = "0.1.0"
