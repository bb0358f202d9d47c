"""Tokens, scopes and clients: pure, no I/O, no web framework."""
