"""The lake: where every layer's objects live, and how they are reached.

Owns the key layout of SPEC §2 (``layout``), the storage adapters for a local folder and S3
(``storage``), the lake lock (``lock``), bronze intake (``intake``: listing a day's raw files
and the ingestion ledger), the local scratch staging of validated rows (``staging``), the
retention cut-offs (``retention``) and the test-only kill points at the I/O boundaries
(``failpoints``: inert unless ``ECOM_FAILPOINT_KILL_AT`` is set). May import ``errors``,
``settings`` and ``contracts.datasets``; nothing of silver, gold, the warehouse or a run.
"""
