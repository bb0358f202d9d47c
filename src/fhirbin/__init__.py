"""fhirbin: a FHIR R4 Binary service."""

__version__ = "0.1.0"
