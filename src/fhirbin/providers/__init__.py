"""Who is calling, found out with I/O: fhirbin's own tokens, external identity providers, token
introspection, client keys by URL. The rules they apply are pure and live in ``fhirbin.auth``."""
