"""RequestContext: what fhirbin knows about one request, typed, in one place.

The outermost middleware (api/observe.py) makes it when a request arrives and leaves it in the
ASGI scope; every later layer reads and fills the same object instead of scattered scope keys:

* ``request_id``: ``X-Request-Id`` when sent and well-formed, else a new id; echoed on the
  response and stored with the audit record (R4 http.html#custom);
* ``interaction``: the FHIR interaction, classified once from method and path;
* ``claims``: the verified access token (set by the auth middleware or the fast read lane);
  ``client_id`` names the client when there is no token (the token endpoint's client, or the
  client that asked for a signed URL);
* the audit facts a handler adds: ``version`` (the version a read served), ``query`` (the
  ``(name, value)`` search parameters applied), ``audited`` (a write stored its own record in
  its transaction);
* ``refusal``: why the request was refused (an OperationOutcome's diagnostics, never a body);
* ``fault``: the dependency a 503/507 blamed (``"database"``...), for the metrics.

Taking these facts costs a few attribute writes on the request path; the audit record is built
from them later, off it (docs/security.md#audit).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from starlette.types import Scope

if TYPE_CHECKING:
    from fhirbin.auth.tokens import AccessClaims
    from fhirbin.fhir.audit import Interaction
    from fhirbin.fhir.ids import TimeOrderedIds

__all__ = ["CONTEXT_KEY", "MAX_DETAIL", "RequestContext", "context_of", "request_id_of"]

#: The scope key the context lives under.
CONTEXT_KEY = "fhirbin.context"
MAX_DETAIL = 1000  # characters of a refusal reason kept

# A request id is echoed in a header and stored: a conservative token syntax, bounded.
_REQUEST_ID_RE = re.compile(r"[A-Za-z0-9._:/+=@-]{1,128}")


class RequestContext:
    """One request's facts; see the module docstring."""

    __slots__ = (
        "audited",
        "claims",
        "client_id",
        "fault",
        "interaction",
        "query",
        "refusal",
        "request_id",
        "started",
        "version",
    )

    def __init__(self, request_id: str, started: float = 0.0) -> None:
        self.request_id = request_id
        #: ``time.time()`` when the request arrived (the audit record's ``recorded``).
        self.started = started
        self.interaction: Interaction | None = None
        self.claims: AccessClaims | None = None
        self.client_id: str | None = None
        self.version: int | None = None
        self.query: Sequence[tuple[str, str]] | None = None
        self.audited = False
        self.refusal: str | None = None
        self.fault: str | None = None

    @property
    def who(self) -> str | None:
        """The client id the request acted as: the token's, else the one noted."""
        return self.claims.client_id if self.claims is not None else self.client_id

    def refuse(self, exc: Exception) -> None:
        """Remember why the request was refused (an error's diagnostics; the error renderer
        calls this). Diagnostics are the server's own words and never quote a body or a
        token."""
        diagnostics = getattr(exc, "diagnostics", None)
        if isinstance(diagnostics, str):
            hint = getattr(exc, "audit_detail", None)  # e.g. a 404 hiding an existing Binary
            detail = f"{diagnostics} ({hint})" if hint else diagnostics
            self.refusal = detail[:MAX_DETAIL]


def context_of(scope: Scope) -> RequestContext:
    """The request's context; made here (with an empty request id) when no middleware made
    one, as in a test that drives a single layer."""
    found: RequestContext | None = scope.get(CONTEXT_KEY)
    if found is None:
        found = scope[CONTEXT_KEY] = RequestContext("")
    return found


def request_id_of(scope: Scope, ids: TimeOrderedIds) -> str:
    """``X-Request-Id`` when sent and well-formed, else a new id from ``ids``."""
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            text: str = value.decode("latin-1")
            if _REQUEST_ID_RE.fullmatch(text):
                return text
            break
    return ids.next()
