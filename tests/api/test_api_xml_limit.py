"""FHIR XML bodies have their own, lower size limit (FHIRBIN_MAX_XML_SIZE): an XML parser
holds Binary.data whole. Native and FHIR JSON bodies are not bound by it."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from fhirbin.config import load_settings
from tests.support import BASE, register, serving

pytestmark = pytest.mark.anyio

MAX_XML_BODY = 1024 * 1024
CONTENT = b"\x01" * (MAX_XML_BODY // 4 * 3 + 3)  # its base64 alone is over the XML limit


async def test_an_xml_body_over_its_limit_is_413_while_json_and_native_are_accepted(
    tmp_path: Path,
) -> None:
    settings = load_settings(
        {},
        {
            "data_dir": tmp_path / "data",
            "base_url": BASE,
            "max_binary_size": 4 * MAX_XML_BODY,
            "max_xml_size": MAX_XML_BODY,
        },
    )
    async with serving(settings) as (app, http):
        client_id, secret = await register(app)
        token = (
            await http.post(
                "/fhir/auth/token",
                data={"grant_type": "client_credentials", "scope": "system/Binary.cruds"},
                auth=(client_id, secret),
            )
        ).json()["access_token"]
        auth = {"Authorization": f"Bearer {token}", "Prefer": "return=minimal"}
        data = base64.b64encode(CONTENT)
        xml = (
            b'<Binary xmlns="http://hl7.org/fhir"><contentType value="a/b"/><data value="'
            + data
            + b'"/></Binary>'
        )
        refused = await http.post(
            "/fhir/Binary", content=xml, headers={**auth, "Content-Type": "application/fhir+xml"}
        )
        assert refused.status_code == 413
        issue = refused.json()["issue"][0]
        assert issue["code"] == "too-long"
        assert str(MAX_XML_BODY) in issue["diagnostics"]
        assert await app.state.runtime.catalogue.current_all() == []
        as_json = json.dumps(
            {"resourceType": "Binary", "contentType": "a/b", "data": data.decode()}
        )
        accepted = await http.post(
            "/fhir/Binary",
            content=as_json,
            headers={**auth, "Content-Type": "application/fhir+json"},
        )
        assert accepted.status_code == 201, accepted.text
        native = await http.post(
            "/fhir/Binary", content=CONTENT, headers={**auth, "Content-Type": "a/b"}
        )
        assert native.status_code == 201
