"""The hottest request in one step: ``GET [base]/Binary/[id]`` answered with the bytes.

Integration engines fetch the same small attachments over and over with the same token. For
that request the general path costs a stack of ASGI layers (auth, limits, Starlette's error
handling and router, a Request object); measured on the 1 KiB read, those layers were about a
quarter of a worker's time. :class:`HotRead` sits inside the audit middleware (so the request
is audited exactly as any other) and answers it directly when everything about it is the
common case, using the same parts as the general path:

* the token is one of fhirbin's own, already verified and cached (``TokenVerifier.cached``),
  its client known active within the revocation interval, and its scopes grant
  ``system/Binary.r`` outright (patient-bound access is decided by the general path);
* the request is a plain GET: no query string, no conditional or Range header, a single
  Authorization and Accept, and the Accept negotiates the native form
  (docs/decisions.md#read-representation);
* the current version exists, is not deleted, and its content is in memory (small contents,
  storage/smallcache.py) or a local file (``pathsend``).

Anything else, including every error, falls through untouched to the general path, which
then decides from scratch; nothing has been sent by then. Rate limiting counts every request
in LimitsMiddleware, so with ``FHIRBIN_RATE_LIMIT`` set this lane is not installed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from starlette.types import ASGIApp, Receive, Scope, Send

from fhirbin.api.audit import AUDIT_KEY
from fhirbin.api.middleware import CLAIMS_KEY
from fhirbin.api.reads import whole_content_headers
from fhirbin.api.responses import encode_headers
from fhirbin.auth.scopes import allows
from fhirbin.auth.tokens import AccessClaims
from fhirbin.errors import FhirbinError
from fhirbin.faults import DependencyUnavailable, OutOfSpace
from fhirbin.fhir.ids import ID_RE
from fhirbin.fhir.negotiate import Representation, read_representation
from fhirbin.metadata.base import BinaryVersion

if TYPE_CHECKING:
    from fhirbin.runtime import Runtime

PREFIX = "/fhir/Binary/"
#: Headers whose presence sends a request down the general path (RFC 9110 §13, §14).
_GENERAL = frozenset({b"if-none-match", b"if-modified-since", b"if-match", b"range", b"if-range"})
_MAX_REMEMBERED = 10_000


class HotRead:
    def __init__(
        self, app: ASGIApp, *, runtime: Callable[[], Runtime], max_header_size: int
    ) -> None:
        self.app = app
        self.runtime = runtime  # the lifespan opens it after the middleware are built
        self.max_header_size = max_header_size
        # Per version (id, version): its encoded headers. Per Accept value: whether it
        # negotiates the native form. Both derived from immutable inputs: never stale.
        self._headers: dict[tuple[str, int], list[tuple[bytes, bytes]]] = {}
        self._native_accept: dict[bytes, bool] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] == "GET"
            and not scope.get("query_string")
            and scope["path"].startswith(PREFIX)
            and await self._answer(scope, send, scope["path"][len(PREFIX) :])
        ):
            return
        await self.app(scope, receive, send)

    async def _answer(self, scope: Scope, send: Send, binary_id: str) -> bool:
        """Answer the request and return True, or return False having sent nothing."""
        if ID_RE.match(binary_id) is None:
            return False
        claims = self._claims(scope)
        if claims is None:
            return False
        runtime = self.runtime()
        service = runtime.service
        try:
            version = await service.catalogue.current(binary_id)
        except (DependencyUnavailable, OutOfSpace):
            return False  # the general path answers the fault as an OperationOutcome
        if version is None or version.deleted or version.sha256 is None:
            return False
        content = service.small_content(version)
        path = None if content is not None else service.content_path(version)
        if content is None and (
            path is None or "http.response.pathsend" not in scope.get("extensions", {})
        ):
            return False
        scope[CLAIMS_KEY] = claims
        scope[AUDIT_KEY] = {"version": version.version}
        start = {"type": "http.response.start", "status": 200, "headers": self._encoded(version)}
        await send(start)
        if content is not None:
            await send({"type": "http.response.body", "body": content, "more_body": False})
        else:
            await send({"type": "http.response.pathsend", "path": str(path)})
        return True

    def _claims(self, scope: Scope) -> AccessClaims | None:
        """The claims of a plain request with a hot token that may read any Binary."""
        authorization = accept = None
        size = 0
        for name, value in scope["headers"]:
            size += len(name) + len(value) + 4
            if name == b"authorization":
                if authorization is not None:
                    return None
                authorization = value
            elif name == b"accept":
                if accept is not None:
                    return None
                accept = value
            elif name in _GENERAL:
                return None
        if authorization is None or size > self.max_header_size:
            return None
        if accept is not None and not self._is_native(accept):
            return None
        scheme, _, token = authorization.decode("latin-1").strip().partition(" ")
        if scheme.lower() != "bearer":
            return None
        runtime = self.runtime()
        claims = runtime.verifier.cached(token.strip(), runtime.base_url)
        if claims is None or runtime.clients.fresh(claims.client_id) is not True:
            return None
        return claims if allows(claims.scope, "r") else None

    def _is_native(self, accept: bytes) -> bool:
        known = self._native_accept.get(accept)
        if known is None:
            try:
                fmt = read_representation(None, accept.decode("latin-1"))
            except FhirbinError:
                fmt = None  # a 406: the general path answers it
            known = fmt is Representation.NATIVE
            if len(self._native_accept) >= _MAX_REMEMBERED:
                self._native_accept.clear()
            self._native_accept[accept] = known
        return known

    def _encoded(self, version: BinaryVersion) -> list[tuple[bytes, bytes]]:
        key = (version.id, version.version)
        headers = self._headers.get(key)
        if headers is None:
            headers = encode_headers(whole_content_headers(version))
            if len(self._headers) >= _MAX_REMEMBERED:
                self._headers.clear()
            self._headers[key] = headers
        return headers
