"""The package version, apart from the package's face so any module may name it without
importing ``facegate/__init__.py`` (which sits above every stage)."""

__version__ = "0.2.0.dev0"
