"""The example survey app (``flask --app example_app run``, ``python -m example_app``)."""

from .app import create_app

__all__ = ["create_app"]
