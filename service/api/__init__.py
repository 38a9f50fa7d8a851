"""The HTTP face: a FastAPI app built by `create_app`."""

from .app import create_app

__all__ = ["create_app"]
