"""The fast lane: every read form answered without the framework, by the one read path.

Integration engines fetch the same attachments over and over with the same token. For those
requests the general path costs a stack of ASGI layers (full token verification, limits,
Starlette's error handling and router, a ``Request`` object). :class:`FastLane` sits just
inside the observing middleware (so every request it answers is counted, logged and audited
like any other) and answers, when the request's token is one it already verified:

* ``GET``/``HEAD [base]/Binary/[id]`` and ``[base]/Binary/[id]/_history/[vid]`` in every form
  (native, FHIR JSON, FHIR XML; conditional, ranged);
* ``GET``/``HEAD [base]/Binary?…`` and ``POST [base]/Binary/_search`` with a small form body.

It decides nothing itself: the access comes from security/access.py, the answer from
api/reading.py and api/searches.py, exactly as the router's handlers get them. It only skips
work that cannot change the answer for such a request:

* the token is one of fhirbin's own, already verified and cached (``TokenVerifier.cached``),
  its client known active within the revocation interval — the auth middleware's checks,
  remembered;
* the headers are within ``FHIRBIN_MAX_HEADER_SIZE`` and carry one Authorization header, and no
  ``access_token`` is in the URL (the auth and limits middleware's refusals).

Anything else — an unknown token, any error at all — falls through untouched to the general
path, which decides from scratch and renders the error; nothing has been sent by then (a
planned answer reads its body's first bytes before its status, api/responses.py). The lane
sits outside Starlette's own stack (api/app.py), so an unexpected error is rendered as a 500 by
that stack's error handler when the general path meets it again. With
``FHIRBIN_RATE_LIMIT`` set the lane is not installed: LimitsMiddleware must count every
request.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fhirbin.api.context import context_of
from fhirbin.api.middleware import refuse_query_token
from fhirbin.api.reading import ask_of, read_binary, vread_binary
from fhirbin.api.responses import StreamedResponse
from fhirbin.api.searches import FORM, search_binaries
from fhirbin.auth.tokens import AccessClaims
from fhirbin.errors import FhirbinError
from fhirbin.fhir.negotiate import media_type_essence
from fhirbin.security.access import grant

if TYPE_CHECKING:
    from fhirbin.runtime import Runtime

PREFIX = "/fhir/Binary"
#: A POSTed search body the lane reads itself; larger ones go the general way.
MAX_FORM = 4096


class FastLane:
    def __init__(
        self, app: ASGIApp, *, runtime: Callable[[], Runtime], max_header_size: int
    ) -> None:
        self.app = app
        self.runtime = runtime  # the lifespan opens it after the middleware are built
        self.max_header_size = max_header_size

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(PREFIX):
            answered, receive = await self._answer(scope, receive, send)
            if answered:
                return
        await self.app(scope, receive, send)

    async def _answer(self, scope: Scope, receive: Receive, send: Send) -> tuple[bool, Receive]:
        """Answer and return True, or return False having sent nothing (with a ``receive``
        that replays any body the lane read)."""
        method: str = scope["method"]
        parts = scope["path"][len(PREFIX) :].split("/")
        # "" + "/" → ["", ""]; "/x" → ["", "x"]; "/x/_history/2" → ["", "x", "_history", "2"]
        reading = method in ("GET", "HEAD")
        if (parts in ([""], ["", ""]) and reading) or (
            parts == ["", "_search"] and method == "POST"
        ):
            kind = "search"
        elif len(parts) == 2 and reading and parts[1]:
            kind = "read"
        elif len(parts) == 4 and reading and parts[2] == "_history" and parts[1] and parts[3]:
            kind = "vread"
        else:
            return False, receive
        claims = self._claims(scope)
        if claims is None:
            return False, receive
        form = b""
        if method == "POST":
            messages = await self._small_body(scope, receive)
            if messages is None:
                return False, receive
            receive = _replay(messages, receive)
            if messages[-1]["type"] != "http.request":
                return False, receive  # a disconnect: the general path sees it too
            form = b"".join(message.get("body", b"") for message in messages)

        async def read_form() -> bytes:
            return form

        runtime = self.runtime()
        context = context_of(scope)
        ask = ask_of(scope)
        try:
            planned: StreamedResponse
            if kind == "search":
                access = grant(claims, "s", runtime.base_url)
                planned = await search_binaries(runtime, access, ask, read_form, context)
            elif kind == "read":
                access = grant(claims, "r", runtime.base_url)
                planned = await read_binary(runtime, access, ask, parts[1], context)
            else:
                access = grant(claims, "r", runtime.base_url)
                planned = await vread_binary(runtime, access, ask, parts[1], parts[3], context)
            context.claims = claims
            await planned.prepare(scope)
        except Exception:
            context.version = context.query = None
            return False, receive
        await planned.send_prepared(scope, send)
        return True, receive

    def _claims(self, scope: Scope) -> AccessClaims | None:
        """The claims of a request whose token this node already verified."""
        authorization = None
        size = 0
        for name, value in scope["headers"]:
            size += len(name) + len(value) + 4
            if name == b"authorization":
                if authorization is not None:
                    return None
                authorization = value
        if authorization is None or size > self.max_header_size:
            return None
        try:
            refuse_query_token(scope)
        except FhirbinError:
            return None
        scheme, _, token = authorization.decode("latin-1").strip().partition(" ")
        if scheme.lower() != "bearer":
            return None
        runtime = self.runtime()
        claims = runtime.verifier.cached(token.strip(), runtime.base_url)
        if claims is None or runtime.clients.fresh(claims.client_id) is not True:
            return None
        return claims

    async def _small_body(self, scope: Scope, receive: Receive) -> list[Message] | None:
        """The messages of a POSTed form body of at most MAX_FORM bytes by Content-Length, read
        whole; None (nothing read) for anything else."""
        length = content_type = None
        for name, value in scope["headers"]:
            if name == b"content-length":
                length = value
            elif name == b"content-type":
                content_type = value
        if length is None or not length.isdigit() or int(length) > MAX_FORM:
            return None
        if content_type is None or media_type_essence(content_type.decode("latin-1")) != FORM:
            return None
        messages = []
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request" or not message.get("more_body", False):
                return messages


def _replay(messages: list[Message], receive: Receive) -> Receive:
    """A ``receive`` that gives ``messages`` again, then defers to the server's."""
    pending = list(messages)

    async def replayed() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replayed
