"""Content screening on upload: sniffing, type policy and the ClamAV scanner (I/O lives here)."""
