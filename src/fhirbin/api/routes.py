"""Every route, one line each. Longer, fixed paths come before the ones with parameters."""

from __future__ import annotations

from starlette.routing import BaseRoute, Route

from fhirbin.api import discovery, handlers


def routes() -> list[BaseRoute]:
    return [
        Route("/fhir/metadata", discovery.metadata, methods=["GET"]),
        Route(
            "/fhir/.well-known/smart-configuration", discovery.smart_configuration, methods=["GET"]
        ),
        Route("/fhir/.well-known/jwks.json", discovery.jwks, methods=["GET"]),
        Route("/fhir/auth/token", discovery.token, methods=["POST"]),
        Route("/fhir/Binary", handlers.search, methods=["GET"]),
        Route("/fhir/Binary", handlers.create, methods=["POST"]),
        Route("/fhir/Binary/", handlers.search, methods=["GET"]),
        Route("/fhir/Binary/", handlers.create, methods=["POST"]),
        Route("/fhir/Binary/_search", handlers.search, methods=["POST"]),
        Route("/fhir/Binary/{id}", handlers.read, methods=["GET"]),
        Route("/fhir/Binary/{rest:path}", handlers.not_found, methods=["GET"]),
    ]
