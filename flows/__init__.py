"""Prefect flows: one per stage, and :mod:`flows.study` composing them."""

import tasks  # noqa: F401  (sets the embedded Prefect/MLflow defaults first)
