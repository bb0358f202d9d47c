"""The catalogue: Binary versions and OAuth2 clients."""
