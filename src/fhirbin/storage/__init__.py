"""Content stores: bytes by SHA-256 key."""
