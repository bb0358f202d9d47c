"""Tokens, scopes and clients: pure, no web framework, no database.

The one piece of I/O is ``keyfile``: loading, or creating on first start, the signing key file.
"""
