"""fhirbin's exception hierarchy.

    FhirbinError                  status + FHIR IssueType code + diagnostics
    ├── BadRequest                400 invalid
    ├── Unauthorized              401 login   (WWW-Authenticate: Bearer, RFC 6750 §3)
    ├── Forbidden                 403 forbidden (insufficient_scope)
    ├── OperationDisabled         403 forbidden (switched off on this server; no challenge)
    ├── SignatureRefused          403 forbidden (a signed URL altered or expired; no challenge)
    ├── NotFound                  404 not-found
    │   └── HiddenByPolicy        404 (exists, but not for this caller; audited as such)
    ├── MethodNotAllowed          405 not-supported
    ├── NotAcceptable             406 not-supported
    ├── RequestTimeout            408 timeout
    ├── Gone                      410 deleted
    ├── PreconditionFailed        412 conflict
    ├── PayloadTooLarge           413 too-long
    ├── UnsupportedMediaType      415 not-supported
    ├── UnprocessableContent      422 business-rule (content screening: malware found)
    ├── ServiceUnavailable        503 transient (Retry-After; e.g. the virus scanner is down)
    ├── InsufficientStorage       507 exception (the disk or the database is full)
    ├── TooManyRequests           429 throttled (Retry-After)
    └── OAuthError                RFC 6749 §5.2 token-endpoint error (JSON, not an OperationOutcome)

Code anywhere below ``api/`` raises these; ``api/errors.py`` alone turns them into responses.
The IssueType codes follow R4 operationoutcome.html and the status mapping of
docs/decisions.md#error-status-codes.
"""

from __future__ import annotations

from collections.abc import Mapping


class FhirbinError(Exception):
    """An error with an HTTP status, a FHIR IssueType code and a message safe to show."""

    status: int = 500
    code: str = "exception"

    def __init__(
        self,
        diagnostics: str,
        *,
        expression: str | None = None,
        headers: Mapping[str, str] | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(diagnostics)
        self.diagnostics = diagnostics
        self.expression = expression
        self.headers: dict[str, str] = dict(headers or {})
        if code is not None:
            self.code = code


class BadRequest(FhirbinError):
    status = 400
    code = "invalid"


class Unauthorized(FhirbinError):
    """401. ``error`` is the RFC 6750 error code; None when no credentials were sent (§3.1)."""

    status = 401
    code = "login"

    def __init__(self, diagnostics: str, *, error: str | None = "invalid_token") -> None:
        challenge = 'Bearer realm="fhirbin"'
        if error is not None:
            challenge += f', error="{error}", error_description="{_quote_safe(diagnostics)}"'
        super().__init__(
            diagnostics, expression="http.Authorization", headers={"WWW-Authenticate": challenge}
        )
        self.error = error


class Forbidden(FhirbinError):
    """403: the token is good but its scopes do not allow the interaction (RFC 6750 §3.1)."""

    status = 403
    code = "forbidden"

    def __init__(self, diagnostics: str, *, scope: str | None = None) -> None:
        challenge = 'Bearer realm="fhirbin", error="insufficient_scope"'
        if scope:
            challenge += f', scope="{scope}"'
        super().__init__(
            diagnostics, expression="http.Authorization", headers={"WWW-Authenticate": challenge}
        )


class SignatureRefused(FhirbinError):
    """403: a signed URL (docs/api.md, "Signed URLs") that was altered, is expired or names
    something else. No ``WWW-Authenticate``: no token was asked for, and none would help."""

    status = 403
    code = "forbidden"

    def __init__(self, diagnostics: str) -> None:
        super().__init__(diagnostics, expression="http.sig")


class OperationDisabled(FhirbinError):
    """403: an operation this server's configuration switches off (e.g. $expunge without
    FHIRBIN_ALLOW_EXPUNGE); no token would help, so no WWW-Authenticate challenge."""

    status = 403
    code = "forbidden"


class NotFound(FhirbinError):
    status = 404
    code = "not-found"


class HiddenByPolicy(NotFound):
    """A 404 for something that exists but the caller may not know about (R4
    security.html#AccessDenied). Answered exactly like NotFound; only the audit trail knows."""

    audit_detail = "hidden by securityContext policy"


class MethodNotAllowed(FhirbinError):
    status = 405
    code = "not-supported"


class NotAcceptable(FhirbinError):
    status = 406
    code = "not-supported"


class RequestTimeout(FhirbinError):
    status = 408
    code = "timeout"


class Gone(FhirbinError):
    status = 410
    code = "deleted"


class PreconditionFailed(FhirbinError):
    status = 412
    code = "conflict"


class PayloadTooLarge(FhirbinError):
    status = 413
    code = "too-long"


class UnsupportedMediaType(FhirbinError):
    status = 415
    code = "not-supported"


class TooManyRequests(FhirbinError):
    status = 429
    code = "throttled"

    def __init__(self, diagnostics: str, *, retry_after: int) -> None:
        super().__init__(diagnostics, headers={"Retry-After": str(retry_after)})


class UnprocessableContent(FhirbinError):
    """422: well-formed content that a business rule refuses (R4 http.html#create: 422 for
    business rules), such as a virus scanner's detection."""

    status = 422
    code = "business-rule"


class ServiceUnavailable(FhirbinError):
    """503: a service fhirbin depends on is down; the client may retry after ``retry_after``
    seconds (RFC 9110 §10.2.3 Retry-After, §15.6.4)."""

    status = 503
    code = "transient"

    def __init__(self, diagnostics: str, *, retry_after: int = 10) -> None:
        super().__init__(diagnostics, headers={"Retry-After": str(retry_after)})


class InsufficientStorage(FhirbinError):
    """507: the disk or the database is full (RFC 4918 §11.5); nothing of the request was
    stored, and the client may retry once an operator made room."""

    status = 507
    code = "exception"


class OAuthError(FhirbinError):
    """An RFC 6749 §5.2 error from the token endpoint: rendered as ``{"error": ...}`` JSON."""

    code = "security"

    def __init__(self, error: str, description: str, *, status: int = 400) -> None:
        headers = {}
        if error == "invalid_client" and status == 401:
            # RFC 6749 §5.2: 401 for invalid_client carries a WWW-Authenticate challenge.
            headers["WWW-Authenticate"] = 'Basic realm="fhirbin"'
        super().__init__(description, headers=headers)
        self.error = error
        self.status = status


def _quote_safe(text: str) -> str:
    """RFC 6750 §3: error_description is limited to printable ASCII without ``"`` and ``\\``."""
    return "".join(c for c in text if 0x20 <= ord(c) <= 0x7E and c not in '"\\')
