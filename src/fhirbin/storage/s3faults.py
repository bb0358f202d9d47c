"""How the S3 store turns its client's failures into ``faults.DependencyUnavailable``.

This module owns the wording an operator sees when the content store is unusable: which setting
to fix (``FHIRBIN_STORAGE_URL`` for a missing bucket, ``AWS_ACCESS_KEY_ID`` or
``AWS_SECRET_ACCESS_KEY`` for rejected credentials) or what failed (unreachable endpoint,
timeout, a 5xx). A detail never contains a secret: only error codes and our own words go in.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import aiohttp
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from fhirbin.faults import DependencyUnavailable

DEPENDENCY = "content store"


def error_code(exc: ClientError) -> str:
    """The S3 error code (``NoSuchKey``...), or the HTTP status for bodiless answers (HEAD)."""
    error = exc.response.get("Error", {})
    return str(error.get("Code") or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode"))


def _status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


class S3Faults:
    """``with faults("reading a blob"):`` turns client failures into DependencyUnavailable.

    Only the client's own exception types are caught, so a caller's exception (a size limit
    raised by the chunk iterator) passes through unchanged.
    """

    def __init__(self, bucket: str, endpoint: str) -> None:
        self.bucket = bucket
        self.endpoint = endpoint

    def describe(self, exc: ClientError, action: str) -> str:
        code, status = error_code(exc), _status(exc)
        if code == "NoSuchBucket":
            return f"FHIRBIN_STORAGE_URL names bucket {self.bucket!r}, which does not exist"
        if code == "InvalidAccessKeyId":
            return "AWS_ACCESS_KEY_ID rejected: the store does not know that access key"
        if code == "SignatureDoesNotMatch":
            return "AWS_SECRET_ACCESS_KEY rejected: the request signature does not match"
        if code in {"ExpiredToken", "InvalidToken", "TokenRefreshRequired"}:
            return f"AWS_SESSION_TOKEN rejected ({code})"
        if code == "AccessDenied" or status == 403:
            return (
                f"access to bucket {self.bucket!r} denied with these credentials "
                "(AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)"
            )
        return f"{action}: {self.endpoint} answered {status} {code}"

    @contextmanager
    def __call__(self, action: str) -> Iterator[None]:
        try:
            yield
        except ClientError as exc:
            raise DependencyUnavailable(DEPENDENCY, self.describe(exc, action)) from exc
        except NoCredentialsError as exc:
            raise DependencyUnavailable(
                DEPENDENCY,
                "no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                "(or another source of the AWS credential chain)",
            ) from exc
        except (BotoCoreError, aiohttp.ClientError, TimeoutError) as exc:
            # Refused, reset, timed out: the message names the endpoint, never credentials.
            raise DependencyUnavailable(
                DEPENDENCY, f"{action}: cannot reach {self.endpoint} ({type(exc).__name__})"
            ) from exc
