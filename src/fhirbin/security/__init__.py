"""Content screening and serving policy."""
