"""Signed URLs in a real browser: headless Chromium against `fhirbin serve` (docs/api.md,
"Signed URLs"; docs/security.md#browsers).

* An ``<img>`` on a page of another origin listed in FHIRBIN_CORS_ORIGINS shows a Binary through
  its signed URL; the same ``<img>`` pointing at the token-protected read, or at a signed URL
  of a server that lists no origins (``Cross-Origin-Resource-Policy: same-origin``), fails.
* An HTML and an SVG Binary whose scripts would change their DOM and call a beacon never run
  when opened through signed URLs (top level or in an ``<iframe>``), while the very same markup
  served plainly by the page's own server does run (so the test can see a script run).
"""

from __future__ import annotations

import html
import json
import re
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.browser import PageServer, dump_dom
from tests.e2e.conftest import Server, start_server, stop_server

pytestmark = pytest.mark.e2e


def png(width: int, height: int) -> bytes:
    """A real RGB PNG of ``width`` x ``height`` pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    rows = b"".join(b"\0" + b"\x20\x80\xe0" * width for _ in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def active_html(beacon: str, tag: str) -> bytes:
    return (
        '<!DOCTYPE html><html><body><p id="marker">untouched</p><script>'
        'document.getElementById("marker").textContent="SCRIPT RAN";'
        f'fetch("{beacon}?from={tag}")</script></body></html>'
    ).encode()


def active_svg(beacon: str, tag: str) -> bytes:
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" width="40" height="20" '
        f"onload=\"fetch('{beacon}?from={tag}-onload')\">"
        '<text id="marker" y="15">untouched</text><script>'
        'document.getElementById("marker").textContent="SCRIPT RAN";'
        f'fetch("{beacon}?from={tag}")</script></svg>'
    ).encode()


@pytest.fixture(scope="module")
def pages() -> Iterator[PageServer]:
    with PageServer().running() as running:
        yield running


@pytest.fixture(scope="module")
def embeddable(tmp_path_factory: pytest.TempPathFactory, pages: PageServer) -> Iterator[Server]:
    """fhirbin listing the page server's origin; storing markup with script on purpose (the
    deep inspection would refuse it: these tests look at the serving wall behind it)."""
    started = start_server(
        tmp_path_factory.mktemp("browser"),
        {
            "FHIRBIN_CORS_ORIGINS": pages.origin,
            "FHIRBIN_INSPECT_ALLOW": "markup-script",
            "FHIRBIN_REVOCATION_CHECK_INTERVAL": "0",
        },
    )
    try:
        yield started
    finally:
        stop_server(started)


def upload(server: Server, token: str, body: bytes, content_type: str) -> str:
    response = httpx.post(
        f"{server.base}/Binary",
        content=body,
        headers={"Authorization": f"Bearer {token}", "Content-Type": content_type},
    )
    assert response.status_code == 201, response.text
    return response.headers["location"].split("/Binary/")[1].split("/")[0]


def signed_url(server: Server, token: str, binary_id: str) -> str:
    response = httpx.get(
        f"{server.base}/Binary/{binary_id}/$signed-url",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 200, response.text
    url: str = response.json()["parameter"][0]["valueUrl"]
    return url


_IMAGES_PAGE = """<!DOCTYPE html><html><body><pre id="results">pending</pre><script>
const sources = SOURCES;
const results = {};
let left = Object.keys(sources).length;
function settle(name, outcome) {
  results[name] = outcome;
  if (--left === 0) document.getElementById("results").textContent = JSON.stringify(results);
}
for (const [name, src] of Object.entries(sources)) {
  const img = new Image();
  img.onload = () => settle(name, "load " + img.naturalWidth + "x" + img.naturalHeight);
  img.onerror = () => settle(name, "error");
  img.src = src;
  document.body.appendChild(img);
}
</script></body></html>"""


def test_an_img_on_a_listed_origin_shows_the_binary_only_through_a_signed_url(
    embeddable: Server, server: Server, pages: PageServer, tmp_path: Path
) -> None:
    image = png(3, 2)
    token = embeddable.token()
    binary_id = upload(embeddable, token, image, "image/png")
    # the same image on a server that lists no origins (the e2e module's plain server)
    plain_token = server.token()
    plain_id = upload(server, plain_token, image, "image/png")
    plain_signed = signed_url(server, plain_token, plain_id)
    outside = httpx.get(plain_signed)  # the URL itself is good: only the browser refuses it
    assert (outside.status_code, outside.content) == (200, image)
    assert outside.headers["cross-origin-resource-policy"] == "same-origin"
    sources = {
        "signed": signed_url(embeddable, token, binary_id),
        "token-read": f"{embeddable.base}/Binary/{binary_id}",
        "signed-on-a-server-listing-no-origins": plain_signed,
    }
    page = _IMAGES_PAGE.replace("SOURCES", json.dumps(sources))
    pages.pages["/images.html"] = ("text/html; charset=utf-8", page.encode())
    dom = dump_dom(f"{pages.origin}/images.html", tmp_path)
    found = re.search(r'<pre id="results">(.*?)</pre>', dom, re.S)
    assert found is not None, dom
    assert json.loads(html.unescape(found.group(1))) == {
        "signed": "load 3x2",
        "token-read": "error",
        "signed-on-a-server-listing-no-origins": "error",
    }


_FRAMES_PAGE = """<!DOCTYPE html><html><body><p id="state">framed</p>
FRAMES
</body></html>"""


def test_html_and_svg_opened_through_signed_urls_never_run_their_scripts(
    embeddable: Server, pages: PageServer, tmp_path: Path
) -> None:
    beacon = f"{pages.origin}/beacon"
    token = embeddable.token()
    signed = {
        "html": signed_url(
            embeddable,
            token,
            upload(embeddable, token, active_html(beacon, "binary-html"), "text/html"),
        ),
        "svg": signed_url(
            embeddable,
            token,
            upload(embeddable, token, active_svg(beacon, "binary-svg"), "image/svg+xml"),
        ),
    }
    # The same markup served plainly by the page's own server: there the scripts do run.
    pages.pages["/control.html"] = ("text/html", active_html(beacon, "control-html"))
    pages.pages["/control.svg"] = ("image/svg+xml", active_svg(beacon, "control-svg"))
    frames = [signed["html"], signed["svg"], "/control.html", "/control.svg"]
    pages.pages["/frames.html"] = (
        "text/html; charset=utf-8",
        _FRAMES_PAGE.replace(
            "FRAMES", "\n".join(f'<iframe src="{html.escape(src)}"></iframe>' for src in frames)
        ).encode(),
    )
    dump_dom(f"{pages.origin}/frames.html", tmp_path / "frames")
    ran = {hit.split("from=", 1)[1] for hit in pages.beacons}
    assert {"control-html", "control-svg"} <= ran  # a script that runs is seen
    control = dump_dom(f"{pages.origin}/control.html", tmp_path / "control")
    assert "SCRIPT RAN" in control
    for kind, url in signed.items():
        home = tmp_path / kind
        dom = dump_dom(url, home, timeout_ms=2000, required=False)
        # Nothing was rendered (Content-Disposition: attachment): an empty document or none,
        # neither the markup's own text nor what its script would have written.
        assert "SCRIPT RAN" not in dom
        assert "untouched" not in dom
        # (Chromium on this machine saves it under Downloads; a fresh Debian 12's Chromium
        # prints no document and saves nothing: either way no script ran, checked below.)
    ran = {hit.split("from=", 1)[1] for hit in pages.beacons}
    assert not {tag for tag in ran if tag.startswith("binary-")}, pages.beacons
