"""A local web page to search an index (FastAPI + one static page)."""

from xmodal.serve.app import ServeConfig, create_app, run_server

__all__ = ["ServeConfig", "create_app", "run_server"]
