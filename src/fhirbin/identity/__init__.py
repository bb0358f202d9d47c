"""Who is calling: fhirbin's own tokens, external identity providers, token introspection."""
