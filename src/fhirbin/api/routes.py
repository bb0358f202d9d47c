"""Every route, one line each.

Starlette tries routes in order, so the hot read comes first, right after the two fixed
``/Binary/_…`` paths its ``{id}`` pattern would otherwise swallow; the rest follow.
"""

from __future__ import annotations

from starlette.routing import BaseRoute, Route

from fhirbin.api import audit, discovery, reads, searches, writes


def routes() -> list[BaseRoute]:
    return [
        Route("/fhir/Binary/_search", searches.search, methods=["POST"]),
        Route("/fhir/Binary/_history", searches.history, methods=["GET"]),
        Route("/fhir/Binary/{id}", reads.read, methods=["GET"]),
        Route("/fhir/metadata", discovery.metadata, methods=["GET"]),
        Route(
            "/fhir/.well-known/smart-configuration", discovery.smart_configuration, methods=["GET"]
        ),
        Route("/fhir/.well-known/jwks.json", discovery.jwks, methods=["GET"]),
        Route("/fhir/auth/token", discovery.token, methods=["POST"]),
        Route("/fhir/Binary", searches.search, methods=["GET"]),
        Route("/fhir/Binary", writes.create, methods=["POST"]),
        Route("/fhir/Binary/", searches.search, methods=["GET"]),
        Route("/fhir/Binary/", writes.create, methods=["POST"]),
        Route("/fhir/Binary/{id}", writes.update, methods=["PUT"]),
        Route("/fhir/Binary/{id}", writes.delete, methods=["DELETE"]),
        Route("/fhir/Binary/{id}/_history", searches.history, methods=["GET"]),
        Route("/fhir/Binary/{id}/_history/{vid}", reads.vread, methods=["GET"]),
        Route("/fhir/Binary/{rest:path}", reads.unrouted, methods=["GET", "PUT", "DELETE"]),
        Route("/fhir/AuditEvent", audit.search, methods=["GET"]),
        Route("/fhir/AuditEvent/{id}", audit.read, methods=["GET"]),
    ]
