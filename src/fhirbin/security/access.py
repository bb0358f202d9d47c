"""Who may touch which Binary: the access a request's token grants, enforced by the service.

R4 binary.html "Security": a Binary's ``securityContext`` names the resource whose access rules
apply to it. Binary belongs to no compartment, so SMART ``patient/`` and ``user/`` scopes have
no meaning of their own on it (docs/decisions.md#patient-scopes-and-security-context): fhirbin
lets such tokens, when they carry a patient in context, read, search and write only the
Binaries whose securityContext is that Patient (relative ``Patient/<id>`` or absolute on this
server); everything else is a 404 to them, so existence is not revealed (R4
security.html#AccessDenied). ``system/`` scopes are unaffected.

:func:`grant` turns a token's claims into an :class:`Access` for one action (or refuses with a
403); the service takes that Access on every call and applies it itself (service.py), so no
handler can forget it.
"""

from __future__ import annotations

from dataclasses import dataclass

from fhirbin.auth.scopes import allows, needed_scope
from fhirbin.auth.tokens import AccessClaims
from fhirbin.errors import Forbidden, HiddenByPolicy

_ACTION_NAMES = {"c": "create", "r": "read", "u": "update", "d": "delete", "s": "search"}


@dataclass(frozen=True)
class Access:
    """What a request may do: ``patient`` None means system-wide access."""

    claims: AccessClaims | None
    patient: str | None
    base_url: str

    def contexts(self) -> frozenset[str] | None:
        """The securityContext values this access is limited to (None: no limit)."""
        if self.patient is None:
            return None
        return frozenset({f"Patient/{self.patient}", f"{self.base_url}/Patient/{self.patient}"})

    def may_see(self, security_context: str | None) -> bool:
        allowed = self.contexts()
        return allowed is None or security_context in allowed

    def hide(self, binary_id: str, security_context: str | None) -> None:
        """A Binary outside this access is a 404, exactly like an unknown one."""
        if not self.may_see(security_context):
            raise HiddenByPolicy(f"Binary/{binary_id} is not known to this server.")

    def check_write(self, security_context: str | None) -> None:
        """A patient-bound token may only write Binaries bound to its patient."""
        if not self.may_see(security_context):
            raise Forbidden(
                f"This token may only write Binaries whose securityContext is "
                f"Patient/{self.patient} (send X-Security-Context: Patient/{self.patient})."
            )


def system_access(base_url: str) -> Access:
    """Unlimited access: the server's own work (CLI maintenance, tests)."""
    return Access(None, None, base_url)


def grant(claims: AccessClaims, action: str, base_url: str) -> Access:
    """The access ``claims`` grant for ``action`` (c r u d s) on Binary.

    SMART scopes-and-launch-context: a ``system/`` scope with the letter grants it outright; a
    ``patient/`` or ``user/`` scope grants it only within the token's patient context.
    """
    if allows(claims.scope, action):
        return Access(claims, None, base_url)
    if allows(claims.scope, action, contexts=("patient", "user")):
        if not claims.patient:
            raise Forbidden(
                "patient/ and user/ scopes need a patient in context (the token has none)."
            )
        return Access(claims, claims.patient.removeprefix("Patient/"), base_url)
    needed = needed_scope(action)
    raise Forbidden(
        f"The access token's scopes do not allow {_ACTION_NAMES[action]} on Binary "
        f"(needs {needed}).",
        scope=needed,
    )
