"""The scale-out configuration: fhirbin on PostgreSQL + S3 (a private SeaweedFS), and the
direct S3 yardsticks (bench/README.md, "Scale-out").

The servers are the test suite's own harnesses, imported from ``tests/`` (the repository root is
put on ``sys.path``): ``tests/pg_support.py`` starts a private PostgreSQL cluster,
``tests/s3_support.py`` a private ``weed mini``. ``ScaleOut`` starts both and stops them in
``close``, which the harness calls from its ``finally``.

The yardsticks talk to the S3 server directly with a plain synchronous botocore client (the
client the S3 store is built on, without the asyncio layer):

- download: a presigned GET of an object holding the same bytes, fetched with the harness's own
  HTTP client (bench/client.py), exactly as fhirbin's download is fetched;
- upload: a multipart upload of the same file, 8 MiB parts (the store's part size), 4 in flight
  in threads, each part read with ``pread`` and signed as botocore signs it over plain HTTP
  (SHA-256 of the payload), no extra checksums (``when_required``, as the store).
"""

from __future__ import annotations

import os
import sys
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from procs import MIB, HarnessError

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

PART_SIZE = 8 * MIB
PARTS_IN_FLIGHT = 4


def _support() -> tuple[Any, Any, Any]:
    """The test harness modules (imported late: they need pytest and botocore)."""
    try:
        import pytest

        from tests import pg_support, s3_support
    except ImportError as exc:
        raise HarnessError(
            f"the scale-out run needs the dev extras (pip install -e '.[dev]'): {exc}"
        ) from exc
    return pytest, pg_support, s3_support


@dataclass
class ScaleOut:
    """A private PostgreSQL cluster and a private SeaweedFS, for one fhirbin."""

    workdir: Path
    stack: ExitStack = field(default_factory=ExitStack)
    database_url: str = ""
    seaweed: Any = None
    cluster: Any = None
    prefix: str = "bench"

    def start(self) -> None:
        pytest, pg_support, s3_support = _support()
        try:
            try:
                self.cluster = pg_support.PostgresCluster.start()
            except pg_support.PostgresMissing as exc:
                raise HarnessError(str(exc)) from exc
            self.stack.callback(self.cluster.destroy)
            self.database_url = self.cluster.new_database()
            self.seaweed = self.stack.enter_context(
                s3_support.start_seaweed(self.workdir / "seaweed")
            )
        except pytest.fail.Exception as exc:  # the support modules fail tests, not harnesses
            raise HarnessError(f"scale-out servers: {exc}") from None
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        self.stack.close()

    @property
    def s3_port(self) -> int:
        port: int = self.seaweed.ports["s3.port"]
        return port

    def fhirbin_env(self) -> dict[str, str]:
        return {
            "FHIRBIN_DATABASE_URL": self.database_url,
            "FHIRBIN_STORAGE_URL": f"s3://{self.seaweed.bucket}/{self.prefix}",
            "FHIRBIN_S3_ENDPOINT_URL": self.seaweed.endpoint,
            **self.seaweed.env,
        }

    def describe(self) -> dict[str, Any]:
        return {
            "catalogue": "PostgreSQL (tests/pg_support.py: private cluster, fsync off)",
            "postgresql_bin": str(self.cluster.binaries),
            "content": "S3 on SeaweedFS weed mini (tests/s3_support.py)",
            "storage_url": f"s3://{self.seaweed.bucket}/{self.prefix}",
            "weed": weed_version(self.seaweed),
        }

    def client(self) -> Any:
        """A synchronous botocore S3 client for the yardsticks."""
        import botocore.session
        from botocore.config import Config

        return botocore.session.get_session().create_client(
            "s3",
            endpoint_url=self.seaweed.endpoint,
            aws_access_key_id=self.seaweed.access_key,
            aws_secret_access_key=self.seaweed.secret_key,
            region_name="us-east-1",
            config=Config(
                signature_version="s3v4",
                s3={"addressing_style": "path"},
                connect_timeout=5,
                read_timeout=120,
                retries={"max_attempts": 1},
                max_pool_connections=PARTS_IN_FLIGHT * 2,
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            ),
        )

    def direct_upload(self, client: Any, key: str, path: Path) -> float:
        """Multipart upload of ``path`` to ``key``; seconds from create to complete."""
        bucket = self.seaweed.bucket
        size = path.stat().st_size
        started = time.perf_counter()
        upload_id = client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
        fd = os.open(path, os.O_RDONLY)
        try:

            def part(number: int, offset: int) -> dict[str, Any]:
                data = os.pread(fd, PART_SIZE, offset)
                sent = client.upload_part(
                    Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=data
                )
                return {"PartNumber": number, "ETag": sent["ETag"]}

            with ThreadPoolExecutor(PARTS_IN_FLIGHT) as pool:
                futures = [
                    pool.submit(part, n, offset)
                    for n, offset in enumerate(range(0, size, PART_SIZE), 1)
                ]
                parts = [f.result() for f in futures]
            client.complete_multipart_upload(
                Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
            )
        except BaseException:
            client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
            raise
        finally:
            os.close(fd)
        return time.perf_counter() - started

    def presigned_get(self, client: Any, key: str) -> str:
        """The request target (path and query) of a presigned GET of ``key``."""
        url = client.generate_presigned_url(
            "get_object", Params={"Bucket": self.seaweed.bucket, "Key": key}, ExpiresIn=3600
        )
        parts = urllib.parse.urlsplit(url)
        return f"{parts.path}?{parts.query}"


def weed_version(seaweed: Any) -> str:
    import subprocess

    from tests.s3_support import find_weed

    done = subprocess.run(  # noqa: S603 - fixed argv
        [find_weed(), "version"], capture_output=True, text=True, timeout=30, check=False
    )
    lines = (done.stdout or done.stderr).strip().splitlines()
    return lines[0] if lines else "unknown"
