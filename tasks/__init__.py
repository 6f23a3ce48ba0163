"""Prefect tasks: thin wrappers around ``brainxai`` functions.

Importing this package first sets the embedded defaults (see :mod:`tasks.env`),
so it must be imported before ``prefect`` or ``mlflow`` anywhere in the
orchestration layer.
"""

from tasks.env import configure_environment

configure_environment()
