"""Prefect tasks: thin, named, retrying wrappers over the steps in ``ecom_pipeline``.

Each task is one step or one side effect; the logic lives in the package so it can be tested
without Prefect. ``policy.pipeline_task`` gives every task the same retry, timeout and caching
behaviour (SPEC §7).
"""
