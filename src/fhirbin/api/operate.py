"""The operator's endpoints, outside the FHIR base (docs/operations.md, "Health and metrics").

* ``GET /healthz``: the process answers (liveness); touches nothing else.
* ``GET /readyz``: the database, the content store and, when FHIRBIN_CLAMAV names one, clamd
  answer (``Runtime.check``); 503 naming the failing dependencies otherwise. Bodies name
  dependencies only: never an address, a host name or a credential (those go to the log).
* ``GET /metrics``: the Prometheus text of the whole server (metrics.py); with
  FHIRBIN_METRICS_TOKEN set, only for ``Authorization: Bearer <that token>``.

None of them takes an access token, and none is audited (they reveal nobody's data).
"""

from __future__ import annotations

import hmac

import structlog
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from fhirbin.api.requests import runtime
from fhirbin.errors import ServiceUnavailable, Unauthorized
from fhirbin.metrics import CONTENT_TYPE

log = structlog.get_logger("fhirbin.operate")

_NO_STORE = {"Cache-Control": "no-store"}
#: Seconds a load balancer is asked to wait before asking again when not ready.
RETRY_AFTER = 5


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"}, headers=_NO_STORE)


async def readyz(request: Request) -> Response:
    failing = await runtime(request).check()
    if failing:
        for dependency, why in failing.items():
            log.warning("not ready", dependency=dependency, detail=why)
        names = ", ".join(sorted(failing))
        raise ServiceUnavailable(f"Not ready: {names} unavailable.", retry_after=RETRY_AFTER)
    return JSONResponse({"status": "ready"}, headers=_NO_STORE)


async def metrics(request: Request) -> Response:
    rt = runtime(request)
    expected = rt.settings.metrics_token
    if expected:
        scheme, _, given = request.headers.get("authorization", "").strip().partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode(), expected.encode()
        ):
            raise Unauthorized(
                "GET /metrics needs FHIRBIN_METRICS_TOKEN as a Bearer token.", error=None
            )
    return Response(rt.metrics.exposition(), media_type=CONTENT_TYPE, headers=_NO_STORE)
