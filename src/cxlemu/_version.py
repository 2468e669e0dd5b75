"""The package's version (``cxlemu --version``; pyproject.toml's ``version``),
in a module of its own so that the CLI reads it without importing the
package's Python API (cxlemu/__init__.py -> api.py -> cli)."""

__version__ = "0.1.0"
