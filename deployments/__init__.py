"""Deployment tooling: the S3 trigger Lambda and prefect.yaml variants (see README.md here)."""
