"""Signed URLs over real HTTP (granian, the embedded deployment): a file large enough to go out
through ``pathsend`` is served whole, in ranges, to HEAD and to conditional requests without a
token, a changed URL is a 403, and the server's log never holds the signature
(docs/api.md, "Signed URLs")."""

from __future__ import annotations

import os
import time

import httpx
import pytest

from tests.e2e.conftest import Server

pytestmark = pytest.mark.e2e


def test_a_signed_url_serves_a_large_file_like_a_native_read(server: Server) -> None:
    token = server.token()
    auth = {"Authorization": f"Bearer {token}"}
    body = os.urandom(3 * 1024 * 1024)  # beyond the small-content memory: a file on disk
    created = httpx.post(
        f"{server.base}/Binary",
        content=body,
        headers={**auth, "Content-Type": "application/octet-stream"},
        timeout=60,
    )
    assert created.status_code == 201, created.text
    binary_id = created.headers["location"].split("/Binary/")[1].split("/")[0]
    made = httpx.get(f"{server.base}/Binary/{binary_id}/$signed-url", headers=auth)
    url: str = made.json()["parameter"][0]["valueUrl"]
    assert url.startswith(f"{server.base}/Binary/{binary_id}/_history/1/$signed-content?sig=")
    with httpx.Client(timeout=60) as http:
        whole = http.get(url)
        assert (whole.status_code, whole.content) == (200, body)
        normal = http.get(f"{server.base}/Binary/{binary_id}", headers=auth)
        for name in (
            "content-type",
            "content-length",
            "etag",
            "content-disposition",
            "content-security-policy",
            "cross-origin-resource-policy",
        ):
            assert whole.headers[name] == normal.headers[name], name
        head = http.head(url)
        assert (head.status_code, head.content) == (200, b"")
        assert head.headers["content-length"] == str(len(body))
        ranged = http.get(url, headers={"Range": "bytes=-100"})
        assert (ranged.status_code, ranged.content) == (206, body[-100:])
        assert http.get(url, headers={"If-None-Match": 'W/"1"'}).status_code == 304
        tampered = http.get(url[:-3] + ("AAA" if not url.endswith("AAA") else "BBB"))
        assert tampered.status_code == 403
        assert tampered.json()["resourceType"] == "OperationOutcome"
    signature = url.split("?sig=")[1]
    time.sleep(1.5)  # the access lines leave standard error within a second
    log = server.log.read_text()
    assert "$signed-content" in log
    assert signature.split(".")[2] not in log
