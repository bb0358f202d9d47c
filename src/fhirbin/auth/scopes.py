"""SMART on FHIR resource scopes: parsing, checking and granting.

This module owns the meaning of a scope string: which SMART v2 / v1 resource scopes fhirbin
understands (SMART App Launch 2.2 ``scopes-and-launch-context.html``), whether a token's scopes
allow an interaction, and which scopes the token endpoint may grant a client given what it
registered (SMART Backend Services "Evaluate Requested Access"; RFC 6749 §3.3).

Scope strings are space-delimited lists (RFC 6749 §3.3). Anything that is not a resource scope
fhirbin supports (``openid``, ``launch/patient``, query-suffixed scopes, out-of-order suffixes)
is ignored, never reinterpreted (SMART: "MAY be ignored ... but never reinterpreted").
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "ACTIONS",
    "SUPPORTED_SCOPES",
    "ScopeGrant",
    "allows",
    "grant",
    "needed_scope",
    "parse_scope",
    "parse_scopes",
    "validate_registration_scope",
]

#: The SMART v2 permission letters, in the only order a suffix may list them.
ACTIONS = "cruds"

#: SMART v1 suffixes and their v2 equivalents (SMART 2.2 "Scopes for requesting FHIR resources":
#: ``.read`` → ``.rs``, ``.write`` → ``.cud``, ``.*`` → ``.cruds``).
_V1_ACTIONS: dict[str, frozenset[str]] = {
    "read": frozenset("rs"),
    "write": frozenset("cud"),
    "*": frozenset(ACTIONS),
}
_V1_SUFFIX: dict[frozenset[str], str] = {letters: suffix for suffix, letters in _V1_ACTIONS.items()}

# context "/" (ResourceType | "*") "." suffix. A "?" (query-suffix scope, SMART 2.2 "finer-grained
# resource constraints") cannot match, so such scopes parse to None: not supported yet, and
# granting them without their restriction would widen them.
_SCOPE_RE = re.compile(r"(system|user|patient)/([A-Z][A-Za-z]+|\*)\.([a-z]+|\*)")
# A v2 suffix: a non-empty subset of "cruds" in that order (".sr", ".rr", ".dus" do not match).
_V2_SUFFIX_RE = re.compile(r"c?r?u?d?s?")

#: For smart-configuration ``scopes_supported`` (SMART 2.2 conformance: every listed scope MUST be
#: supported; the list need not be exhaustive).
SUPPORTED_SCOPES: tuple[str, ...] = (
    "system/Binary.cruds",
    "system/Binary.rs",
    "system/Binary.cud",
    "system/*.cruds",
    "system/*.rs",
    "system/Binary.read",
    "system/Binary.write",
    "system/Binary.*",
    "system/*.*",
    "system/*.read",
    "system/AuditEvent.rs",
    "patient/Binary.rs",
    "patient/Binary.cruds",
    "user/Binary.rs",
)


@dataclass(frozen=True)
class ScopeGrant:
    """One parsed resource scope.

    ``context`` is "system", "user" or "patient"; ``resource`` a FHIR type name or "*";
    ``actions`` a non-empty subset of "cruds"; ``v1`` tells it was written in the v1 form
    (``.read``, ``.write`` or ``.*``).
    """

    context: str
    resource: str
    actions: frozenset[str]
    v1: bool

    def __str__(self) -> str:
        return _format(self.context, self.resource, self.actions, v1=self.v1)


def parse_scope(text: str) -> ScopeGrant | None:
    """Parse one scope token; None for anything that is not a supported resource scope."""
    match = _SCOPE_RE.fullmatch(text)
    if match is None:
        return None
    context, resource, suffix = match.groups()
    v1_actions = _V1_ACTIONS.get(suffix)
    if v1_actions is not None:
        return ScopeGrant(context, resource, v1_actions, v1=True)
    if not _V2_SUFFIX_RE.fullmatch(suffix):
        return None
    return ScopeGrant(context, resource, frozenset(suffix), v1=False)


def parse_scopes(scope: str) -> list[ScopeGrant]:
    """Parse a space-delimited scope string (RFC 6749 §3.3), dropping what does not parse."""
    return list(_parse_cached(scope))


@functools.lru_cache(maxsize=4096)
def _parse_cached(scope: str) -> tuple[ScopeGrant, ...]:
    # A tuple, so callers cannot mutate the cached value.
    return tuple(g for g in map(parse_scope, _split(scope)) if g is not None)


def allows(
    scope: str, action: str, resource: str = "Binary", contexts: tuple[str, ...] = ("system",)
) -> bool:
    """Whether ``scope`` permits ``action`` (one of c r u d s) on ``resource``.

    Scopes combine as a union (SMART 2.2 "scope equivalence"); a ``*`` resource covers every type.
    Raises ValueError for an action that is not a single SMART letter: that is a programming error,
    and refusing loudly beats silently answering 403.
    """
    _check_action(action)
    for g in _parse_cached(scope):
        if (
            action in g.actions
            and g.context in contexts
            and (g.resource == resource or g.resource == "*")
        ):
            return True
    return False


def grant(requested: str, registered: str) -> str:
    """The scope string to put into a token for a client that registered ``registered``.

    Blank ``requested`` means "everything registered" (scope is optional in RFC 6749 §4.4.2).
    Otherwise each requested scope is narrowed to what the registered scopes allow in the same
    context; what nothing covers is dropped (SMART Backend Services: the server MUST ensure the
    granted scopes are within the pre-authorised ones; the response ``scope`` may differ from the
    request). Returns "" when nothing can be granted.
    """
    allowed = _parse_cached(registered)
    if not requested.strip():
        return " ".join(_unique(str(g) for g in allowed))

    out: list[str] = []
    for req in _parse_cached(requested):
        same_context = [g for g in allowed if g.context == req.context]
        wildcard = _union(g.actions for g in same_context if g.resource == "*")
        if req.resource == "*":
            # Registered "*" grants the wildcard; registered concrete types grant just those
            # types, minus letters the wildcard scope already carries.
            out.extend(_emit(req, "*", req.actions & wildcard))
            for resource in _unique(g.resource for g in same_context if g.resource != "*"):
                typed = _union(g.actions for g in same_context if g.resource == resource)
                out.extend(_emit(req, resource, (req.actions & typed) - wildcard))
        else:
            typed = _union(g.actions for g in same_context if g.resource == req.resource)
            out.extend(_emit(req, req.resource, req.actions & (typed | wildcard)))
    return " ".join(_unique(out))


def validate_registration_scope(scope: str) -> str:
    """Check a ``fhirbin client create --scope`` value; return it normalised.

    Every item must be a supported resource scope: a registration is an administrator's statement,
    so a typo there is refused instead of silently dropped.
    """
    items = _split(scope)
    if not items:
        raise ValueError("at least one scope is required, e.g. system/Binary.cruds")
    grants: list[ScopeGrant] = []
    for item in items:
        parsed = parse_scope(item)
        if parsed is None:
            raise ValueError(
                f"unsupported scope {item!r}: expected context/Resource.<subset of cruds in that "
                "order> (e.g. system/Binary.rs) or a v1 .read/.write/.* scope"
            )
        grants.append(parsed)
    return " ".join(_unique(str(g) for g in grants))


#: The resource types this server serves: scopes for any other type grant nothing here.
SERVED_TYPES = frozenset({"Binary", "AuditEvent", "*"})


def idle_scopes(scope: str) -> list[str]:
    """The items of a (valid) registration scope that grant nothing on this server: another
    resource type, such as ``patient/Observation.rs``. Kept (a client may share its registration
    with other servers) but worth a warning to the administrator."""
    idle: list[str] = []
    for item in _split(scope):
        parsed = parse_scope(item)
        if parsed is not None and parsed.resource not in SERVED_TYPES:
            idle.append(item)
    return idle


def needed_scope(action: str, resource: str = "Binary") -> str:
    """The narrowest system scope allowing ``action``: for ``WWW-Authenticate`` (RFC 6750 §3)."""
    _check_action(action)
    return f"system/{resource}.{action}"


def _emit(req: ScopeGrant, resource: str, actions: frozenset[str]) -> list[str]:
    if not actions:
        return []
    # SMART 2.2: return v1 scopes when v1 scopes were requested and granted (as a whole).
    v1 = req.v1 and resource == req.resource and actions == req.actions
    return [_format(req.context, resource, actions, v1=v1)]


def _format(context: str, resource: str, actions: frozenset[str], *, v1: bool) -> str:
    suffix = _V1_SUFFIX[actions] if v1 else "".join(a for a in ACTIONS if a in actions)
    return f"{context}/{resource}.{suffix}"


def _split(scope: str) -> list[str]:
    # RFC 6749 §3.3: scope tokens are separated by spaces (%x20); other whitespace is not a
    # separator, so a token containing it simply fails to parse.
    return [item for item in scope.split(" ") if item]


def _union(sets: Iterable[frozenset[str]]) -> frozenset[str]:
    result: frozenset[str] = frozenset()
    for s in sets:
        result |= s
    return result


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _check_action(action: str) -> None:
    if len(action) != 1 or action not in ACTIONS:
        raise ValueError(f"action must be one of the SMART letters {ACTIONS!r}, got {action!r}")
