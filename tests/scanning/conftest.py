"""The session's real clamd (tests/clamd_support.py) for the scanning tests."""

from __future__ import annotations

from tests import clamd_support

clamd = clamd_support.clamd
