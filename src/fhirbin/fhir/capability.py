"""The CapabilityStatement served at ``[base]/metadata`` (R4 http.html#capabilities).

Owns the R4 CapabilityStatement shape for this server (capabilitystatement.html): an
``instance`` statement of the running software with its ``implementation`` (cpb-14), one
``rest`` entry in server mode secured by SMART-on-FHIR (SMART conformance.html), and the
resources: Binary, then any others the caller names (AuditEvent, read-only). The caller lists
what the endpoint really does; this module checks the lists against the R4 value sets and the
invariants, so a wrong statement fails at startup or in a test, never in a client.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

FHIR_VERSION = "4.0.1"

# R4 valueset-type-restful-interaction, the instance- and type-level codes.
INTERACTION_CODES = frozenset(
    {
        "read",
        "vread",
        "update",
        "patch",
        "delete",
        "history-instance",
        "history-type",
        "create",
        "search-type",
    }
)
SEARCH_PARAM_TYPES = frozenset(
    {"number", "date", "string", "token", "reference", "composite", "quantity", "uri", "special"}
)
VERSIONING_CODES = frozenset({"no-version", "versioned", "versioned-update"})
CONDITIONAL_READ_CODES = frozenset({"not-supported", "modified-since", "not-match", "full-support"})

# The base SearchParameters of the common parameters (R4 searchparameter-registry.html).
_DEFINITIONS = {
    "_id": "http://hl7.org/fhir/SearchParameter/Resource-id",
    "_lastUpdated": "http://hl7.org/fhir/SearchParameter/Resource-lastUpdated",
}
# Resource-specific SearchParameters (R4 auditevent.html#search).
_TYPE_DEFINITIONS = {
    ("AuditEvent", "entity"): "http://hl7.org/fhir/SearchParameter/AuditEvent-entity",
    ("AuditEvent", "date"): "http://hl7.org/fhir/SearchParameter/AuditEvent-date",
}

#: Another resource the endpoint serves: (type, interactions, search params).
OtherResource = tuple[str, Sequence[str], Sequence[tuple[str, str, str]]]
# R4 valueset-restful-security-service; SMART conformance.html names this code.
SMART_ON_FHIR = {
    "coding": [
        {
            "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
            "code": "SMART-on-FHIR",
            "display": "SMART-on-FHIR",
        }
    ],
    "text": "OAuth2 Bearer tokens with SMART App Launch scopes",
}
# R4 datatypes.html#dateTime (CapabilityStatement.date is a dateTime, 1..1).
_DATE_TIME_RE = re.compile(
    r"\A[0-9]{4}(?:-[0-9]{2}(?:-[0-9]{2}(?:T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?"
    r"(?:Z|[+-][0-9]{2}:[0-9]{2}))?)?)?\Z"
)


def capability_statement(
    *,
    base_url: str,
    software_version: str,
    date: str,
    formats: Sequence[str],
    interactions: Sequence[str],
    search_params: Sequence[tuple[str, str, str]],
    versioning: str = "versioned",
    read_history: bool = False,
    update_create: bool = False,
    conditional_read: str = "not-supported",
    other_resources: Sequence[OtherResource] = (),
    token_url: str | None = None,
    authorize_url: str | None = None,
) -> dict[str, Any]:
    """The R4 CapabilityStatement of this fhirbin instance.

    ``search_params`` are ``(name, type, documentation)``. ``other_resources`` lists further
    resource types after Binary, each ``(type, interactions, search_params)``, unversioned
    (fhirbin's AuditEvents are never updated). Raises ValueError for values
    outside the R4 value sets, duplicates (cpb-12 for search parameters), an empty
    ``formats`` (1..*) or a ``date`` that is not a FHIR dateTime.

    ``token_url`` (and ``authorize_url``, only for a server that has an authorization
    endpoint) go into the SMART ``oauth-uris`` extension on ``rest.security``, which clients
    such as the Python fhirclient read to find where to get a token.
    """
    _check(date, formats, interactions, search_params, versioning, conditional_read)
    resource: dict[str, Any] = {
        "type": "Binary",
        "profile": "http://hl7.org/fhir/StructureDefinition/Binary",
    }
    if interactions:  # FHIR JSON has no empty arrays (R4 json.html)
        resource["interaction"] = [{"code": code} for code in interactions]
    resource |= {
        "versioning": versioning,
        "readHistory": read_history,
        "updateCreate": update_create,
        "conditionalRead": conditional_read,
    }
    if search_params:
        resource["searchParam"] = [_search_param(*p) for p in search_params]
    resources = [resource]
    for rtype, other_interactions, other_params in other_resources:
        _check(date, formats, other_interactions, other_params, versioning, conditional_read)
        if rtype in {r["type"] for r in resources}:
            raise ValueError(f"cpb-9: resource type {rtype!r} is listed twice")
        other: dict[str, Any] = {
            "type": rtype,
            "profile": f"http://hl7.org/fhir/StructureDefinition/{rtype}",
        }
        if other_interactions:
            other["interaction"] = [{"code": code} for code in other_interactions]
        other["versioning"] = "no-version"
        if other_params:
            other["searchParam"] = [_search_param(*p, rtype=rtype) for p in other_params]
        resources.append(other)
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": date,
        "publisher": "fhirbin",
        "kind": "instance",
        "software": {"name": "fhirbin", "version": software_version},
        # cpb-14: an instance statement describes a running implementation.
        "implementation": {"description": "fhirbin FHIR R4 Binary service", "url": base_url},
        "fhirVersion": FHIR_VERSION,
        "format": list(formats),
        "rest": [
            {
                "mode": "server",
                "security": {
                    **_oauth_uris(token_url, authorize_url),
                    "service": [SMART_ON_FHIR],
                    "description": (
                        "Every interaction except this statement needs an OAuth2 Bearer "
                        "access token (RFC 6750) with SMART scopes such as system/Binary.rs; "
                        f"the endpoints are in {base_url}/.well-known/smart-configuration."
                    ),
                },
                "resource": resources,
            }
        ],
    }


#: SMART App Launch 1.0 conformance (still read by clients; 2.x points at it): where the
#: OAuth2 endpoints are, on CapabilityStatement.rest.security.
OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"


def _oauth_uris(token_url: str | None, authorize_url: str | None) -> dict[str, Any]:
    """``{"extension": [oauth-uris]}`` naming the endpoints this server has, or ``{}``."""
    uris = [("token", token_url), ("authorize", authorize_url)]
    inner = [{"url": name, "valueUri": url} for name, url in uris if url is not None]
    if not inner:
        return {}
    return {"extension": [{"url": OAUTH_URIS, "extension": inner}]}


def _search_param(
    name: str, type_: str, documentation: str, rtype: str = "Binary"
) -> dict[str, str]:
    param = {"name": name}
    definition = _DEFINITIONS.get(name) or _TYPE_DEFINITIONS.get((rtype, name))
    if definition:
        param["definition"] = definition
    param["type"] = type_
    if documentation:
        param["documentation"] = documentation
    return param


def _check(
    date: str,
    formats: Sequence[str],
    interactions: Sequence[str],
    search_params: Sequence[tuple[str, str, str]],
    versioning: str,
    conditional_read: str,
) -> None:
    if _DATE_TIME_RE.match(date) is None:
        raise ValueError(f"CapabilityStatement.date {date!r} is not a FHIR dateTime")
    if not formats:
        raise ValueError("CapabilityStatement.format is 1..*")
    for code in interactions:
        if code not in INTERACTION_CODES:
            raise ValueError(f"{code!r} is not an R4 type-restful-interaction code")
    if len(set(interactions)) != len(interactions):
        raise ValueError("an interaction is listed twice")
    names = [name for name, _, _ in search_params]
    if len(set(names)) != len(names):
        raise ValueError("cpb-12: search parameter names must be unique")
    for name, type_, _ in search_params:
        if type_ not in SEARCH_PARAM_TYPES:
            raise ValueError(f"search parameter {name!r}: {type_!r} is not an R4 search type")
    if versioning not in VERSIONING_CODES:
        raise ValueError(f"{versioning!r} is not an R4 versioning-policy code")
    if conditional_read not in CONDITIONAL_READ_CODES:
        raise ValueError(f"{conditional_read!r} is not an R4 conditional-read-status code")
