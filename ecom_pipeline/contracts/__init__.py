"""The data contracts of SPEC §3: what a valid source row is.

Owns the dataset specs (``datasets``), the CSV reader with exact line numbers
(``csv_reader``), the pandera rules (``rules``), the validation of a file into valid rows and
quarantine records (``validation``) and PII hashing (``pii``). Pure: Arrow and polars in,
Arrow out, no lake or warehouse I/O. May import ``ecom_pipeline.errors`` only.
"""
