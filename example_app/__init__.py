"""The example survey app: ``flask --app example_app run`` finds ``create_app``."""

from .app import create_app

__all__ = ["create_app"]
