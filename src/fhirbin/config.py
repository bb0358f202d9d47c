"""The one settings table.

Every setting fhirbin has is a row of ``SETTINGS``: its name, type, default and help text. The
CLI flags of ``fhirbin serve``, the ``FHIRBIN_<NAME>`` environment variables and
docs/configuration.md are all generated from this table, and ``Settings`` is the frozen value
built from it. Only ``cli.py`` reads the environment; everything else receives a ``Settings``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ENV_PREFIX = "FHIRBIN_"

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class SettingsError(ValueError):
    """A setting has a value that cannot be used."""


@dataclass(frozen=True)
class Setting:
    """One row of the settings table."""

    name: str
    type: type
    default: Any
    help: str
    #: shown as a flag on ``fhirbin serve`` (all settings are also environment variables)
    serve_flag: bool = False

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def parse(self, raw: str) -> Any:
        """Turn the text of an environment variable or flag into a typed value."""
        text = raw.strip()
        try:
            if self.type is bool:
                if text.lower() in _TRUE:
                    return True
                if text.lower() in _FALSE:
                    return False
                raise ValueError(text)
            if self.type is int:
                return int(text)
            if self.type is Path:
                return Path(text)
        except ValueError as exc:
            raise SettingsError(f"{self.env}: {raw!r} is not a valid {self.type.__name__}") from exc
        return text


MiB = 1024 * 1024

SETTINGS: tuple[Setting, ...] = (
    Setting("host", str, "127.0.0.1", "Address to listen on.", serve_flag=True),
    Setting("port", int, 8080, "TCP port to listen on.", serve_flag=True),
    Setting(
        "data_dir",
        Path,
        Path("./data"),
        "Folder holding the embedded SQLite catalogue (fhirbin.db) and the content (blobs/), "
        "and every node's temporary files. Relative paths are relative to the folder the "
        "command runs in; every command says which data it uses.",
        serve_flag=True,
    ),
    Setting(
        "base_url",
        str,
        "",
        "Public FHIR base URL (e.g. https://fhir.example.org/fhir). Used in Location headers, "
        "Bundle links and as the access-token audience. Empty: http://HOST:PORT/fhir from "
        "FHIRBIN_HOST and FHIRBIN_PORT (127.0.0.1 for a wildcard address), never from a "
        "request's Host header; set it whenever clients reach the server through a proxy.",
    ),
    Setting(
        "access_token_ttl",
        int,
        300,
        "Lifetime in seconds of the access tokens the token endpoint issues (SMART Backend "
        "Services recommends 300 and no more).",
    ),
    Setting(
        "max_binary_size",
        int,
        1024 * MiB,
        "Largest Binary content accepted, in bytes (FHIR datatypes: base64Binary limits "
        "must be documented). Larger uploads get 413 before anything is stored.",
    ),
    Setting(
        "max_xml_size",
        int,
        16 * MiB,
        "Largest FHIR XML (application/fhir+xml) create or update body, in bytes. An XML "
        "parser holds Binary.data whole, so XML bodies cost about four times their size in "
        "memory; FHIR JSON and native bodies stream and are bounded by FHIRBIN_MAX_BINARY_SIZE "
        "alone. Larger XML bodies get 413.",
    ),
    Setting(
        "database_url",
        str,
        "",
        "The catalogue database. Empty: the embedded SQLite file <data-dir>/fhirbin.db. "
        "postgresql://user:password@host:port/dbname: PostgreSQL, shared by every node "
        "(postgres:// and driver suffixes such as postgresql+asyncpg:// are accepted; query "
        "parameters such as sslmode pass through).",
    ),
    Setting(
        "storage_url",
        str,
        "",
        "The content store. Empty: the folder <data-dir>/blobs. s3://bucket/optional/prefix: "
        "an S3 bucket, shared by every node; credentials and region come from AWS_ACCESS_KEY_ID, "
        "AWS_SECRET_ACCESS_KEY, AWS_REGION and the rest of the usual AWS chain.",
    ),
    Setting(
        "s3_endpoint_url",
        str,
        "",
        "Endpoint of an S3-compatible store other than AWS (MinIO, Ceph, SeaweedFS, Garage), "
        "e.g. http://127.0.0.1:8333; path-style addressing is used there. Empty: AWS.",
    ),
    Setting(
        "signing_key",
        Path,
        Path(""),
        "PEM file with the EC P-256 private key that signs access tokens, mounted on every "
        "node. Empty: the keys are kept in the catalogue and shared by every node (made on "
        "first start; `fhirbin keys rotate` adds one).",
    ),
    Setting(
        "revocation_check_interval",
        int,
        5,
        "Seconds a client's revocation status is cached by a server node. A revoked client's "
        "tokens stop working at most this long after `fhirbin client revoke`.",
    ),
    Setting(
        "workers",
        int,
        0,
        "Number of server worker processes; 0 = one per CPU core.",
        serve_flag=True,
    ),
    Setting("log_level", str, "info", "Log level: debug, info, warning or error."),
    Setting(
        "log_format",
        str,
        "auto",
        "Log line format on standard error: json (one JSON object a line), text, or auto "
        "(text on a terminal, json otherwise).",
    ),
    Setting(
        "metrics_token",
        str,
        "",
        "When set, GET /metrics needs it as a Bearer token (Authorization: Bearer <token>); "
        "empty: /metrics answers anyone who can reach it (keep it on a private network).",
    ),
    # --- identity (docs/security.md) ---
    Setting(
        "external_issuer",
        str,
        "",
        "Issuer URL of an external identity provider whose JWT access tokens are trusted "
        "(Keycloak, Entra ID, Okta, a gateway). Empty: only fhirbin's own tokens.",
    ),
    Setting(
        "external_jwks",
        str,
        "",
        "The external issuer's JWK Set: an https/http URL or a file:// path. Cached per its "
        "Cache-Control, refreshed on an unknown kid, fetched at most once a minute.",
    ),
    Setting(
        "audience",
        str,
        "",
        "The audience external tokens must carry. Empty: the FHIR base URL.",
    ),
    Setting(
        "introspection_url",
        str,
        "",
        "RFC 7662 token introspection endpoint for opaque (non-JWT) external tokens.",
    ),
    Setting(
        "introspection_client_id", str, "", "Client id fhirbin uses at the introspection endpoint."
    ),
    Setting(
        "introspection_client_secret",
        str,
        "",
        "Client secret fhirbin uses at the introspection endpoint.",
    ),
    Setting(
        "introspection_cache_ttl",
        int,
        30,
        "Seconds an active introspection answer is reused (never past the token's exp).",
    ),
    # --- access policy ---
    Setting(
        "require_security_context",
        bool,
        False,
        "Refuse writes that name no securityContext (X-Security-Context or the body's).",
    ),
    Setting(
        "allow_expunge",
        bool,
        False,
        "Allow POST [base]/Binary/[id]/$expunge (delete scope): erases every version of a "
        "Binary and its content for good. Off: 403.",
    ),
    # --- content screening ---
    Setting(
        "clamav",
        str,
        "",
        "clamd to scan every upload with (INSTREAM): unix:///path/to/clamd.ctl or "
        "tcp://host:port. Empty: no virus scan.",
    ),
    Setting(
        "clamav_fail_open",
        bool,
        False,
        "When clamd cannot be reached: true stores the upload unscanned, false (the default) "
        "refuses it with 503.",
    ),
    Setting("clamav_timeout", int, 30, "Seconds to wait for clamd's verdict."),
    Setting(
        "type_mismatch",
        str,
        "reject",
        "When the sniffed type contradicts the declared one: reject (415) or accept. A "
        "declared application/octet-stream is never a mismatch.",
    ),
    Setting(
        "deny_types",
        str,
        "executables",
        "Comma-separated media types refused on upload whether declared or sniffed "
        "(type/* wildcards allowed). 'executables' stands for the built-in list of "
        "executables and scripts (PE, ELF, Mach-O, shell, JavaScript, ...).",
    ),
    Setting(
        "allow_types",
        str,
        "",
        "Comma-separated media types accepted on upload (type/* wildcards allowed). Empty: "
        "any type not denied.",
    ),
    # --- deep inspection (docs/security.md#deep-inspection) ---
    Setting(
        "inspect",
        str,
        "reject",
        "Deep inspection of PDF, ZIP, Office, image and markup uploads: reject (422 for "
        "active or booby-trapped content) or off.",
    ),
    Setting(
        "inspect_allow",
        str,
        "",
        "Comma-separated inspection rules turned off (e.g. pdf-embedded-files,office-macros); "
        "docs/security.md lists them.",
    ),
    Setting(
        "inspect_zip_max_expanded",
        int,
        512 * MiB,
        "Largest total uncompressed size a ZIP (nested archives included) may declare.",
    ),
    Setting(
        "inspect_zip_max_ratio",
        int,
        100,
        "A ZIP entry claiming to expand more than this many times over is decompressed "
        "(bounded, in memory) to check it.",
    ),
    Setting(
        "inspect_zip_max_depth",
        int,
        2,
        "Deepest archive nesting accepted (1: no archives inside the ZIP).",
    ),
    Setting(
        "inspect_max_pixels",
        int,
        100_000_000,
        "Largest width x height an uploaded image may declare.",
    ),
    # --- serving ---
    Setting(
        "cors_origins",
        str,
        "",
        "Comma-separated origins allowed to call fhirbin from a browser (CORS). Empty: none.",
    ),
    Setting(
        "signed_url_ttl",
        int,
        300,
        "Lifetime in seconds of the signed URLs $signed-url makes: a URL serves one version of "
        'one Binary without a token until then (docs/api.md, "Signed URLs").',
    ),
    Setting(
        "accel_redirect",
        str,
        "",
        'Only behind nginx configured for it (docs/deployment.md, "nginx sends the files"): '
        "a path prefix such as /_fhirbin_content/. Set, a whole-content native GET of a "
        "Binary stored in the local folder is answered with fhirbin's headers, no body and "
        "X-Accel-Redirect: <prefix><the file's path under the blob folder>, and nginx sends "
        "the file. Without that nginx a client gets an empty 200. Empty: off; ignored with "
        "an S3 store.",
    ),
    # --- limits ---
    Setting(
        "body_timeout",
        int,
        60,
        "Seconds a request body may stall between two chunks before the request is "
        "answered 408 (slow-client protection).",
    ),
    Setting(
        "header_timeout",
        int,
        30,
        "Seconds a client may take to send the request headers.",
    ),
    Setting(
        "rate_limit",
        int,
        0,
        "Requests per second allowed per client (token client_id, else address); 0 = off. "
        "Over it: 429 with Retry-After.",
    ),
    Setting("rate_burst", int, 50, "Requests a client may make at once above its rate."),
    Setting(
        "max_header_size",
        int,
        32768,
        "Largest total size of a request's headers in bytes; larger requests get 431.",
    ),
)

_BY_NAME = {s.name: s for s in SETTINGS}


@dataclass(frozen=True)
class Settings:
    """The settings in force; build it with :func:`load_settings`."""

    host: str
    port: int
    data_dir: Path
    base_url: str
    access_token_ttl: int
    max_binary_size: int
    max_xml_size: int
    database_url: str
    storage_url: str
    s3_endpoint_url: str
    signing_key: Path
    revocation_check_interval: int
    workers: int
    log_level: str
    log_format: str
    metrics_token: str
    external_issuer: str
    external_jwks: str
    audience: str
    introspection_url: str
    introspection_client_id: str
    introspection_client_secret: str
    introspection_cache_ttl: int
    require_security_context: bool
    allow_expunge: bool
    clamav: str
    clamav_fail_open: bool
    clamav_timeout: int
    type_mismatch: str
    deny_types: str
    allow_types: str
    inspect: str
    inspect_allow: str
    inspect_zip_max_expanded: int
    inspect_zip_max_ratio: int
    inspect_zip_max_depth: int
    inspect_max_pixels: int
    cors_origins: str
    signed_url_ttl: int
    accel_redirect: str
    body_timeout: int
    header_timeout: int
    rate_limit: int
    rate_burst: int
    max_header_size: int

    @property
    def public_base_url(self) -> str:
        """The FHIR base URL clients use: Location, Bundle links, token ``iss`` and ``aud``.

        Fixed per process rather than taken from each request's Host header, so tokens and
        links do not depend on a header an attacker controls.
        """
        if self.base_url:
            return self.base_url
        host = self.host
        if host in ("0.0.0.0", "::", ""):  # noqa: S104 - a wildcard bind has no usable name
            host = "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}/fhir"

    @property
    def worker_count(self) -> int:
        """``workers``, with 0 resolved to the number of CPU cores."""
        return self.workers or os.cpu_count() or 1

    @property
    def catalogue_url(self) -> str:
        """``database_url``, or the embedded SQLite file's URL when it is empty."""
        return self.database_url or f"sqlite+aiosqlite:///{self.database_path.resolve()}"

    @property
    def database_path(self) -> Path:
        return self.data_dir / "fhirbin.db"

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "blobs"

    @property
    def signing_key_path(self) -> Path | None:
        """The mounted signing key file; None when the keys are kept in the catalogue."""
        if str(self.signing_key) in ("", "."):
            return None
        return self.signing_key

    @property
    def legacy_signing_key_path(self) -> Path:
        """Where releases before the shared catalogue keys kept the generated key; taken into
        the catalogue on first start so that tokens it signed stay valid."""
        return self.data_dir / "signing-key.pem"


def _validate(values: dict[str, Any]) -> None:
    if values["access_token_ttl"] <= 0:
        raise SettingsError(f"{_BY_NAME['access_token_ttl'].env} must be positive")
    if values["signed_url_ttl"] <= 0:
        raise SettingsError(f"{_BY_NAME['signed_url_ttl'].env} must be positive")
    if values["max_binary_size"] < 0:
        raise SettingsError(f"{_BY_NAME['max_binary_size'].env} must not be negative")
    if not 0 < values["port"] < 65536:
        raise SettingsError(f"{_BY_NAME['port'].env} must be between 1 and 65535")
    if values["workers"] < 0:
        raise SettingsError(f"{_BY_NAME['workers'].env} must not be negative")
    if values["log_format"] not in ("auto", "json", "text"):
        raise SettingsError(f"{_BY_NAME['log_format'].env} must be auto, json or text")
    if values["type_mismatch"] not in ("reject", "accept"):
        raise SettingsError(f"{_BY_NAME['type_mismatch'].env} must be reject or accept")
    if values["inspect"] not in ("reject", "off"):
        raise SettingsError(f"{_BY_NAME['inspect'].env} must be reject or off")
    for name in ("inspect_zip_max_expanded", "inspect_zip_max_ratio", "inspect_zip_max_depth"):
        if values[name] < 1:
            raise SettingsError(f"{_BY_NAME[name].env} must be at least 1")
    accel = values["accel_redirect"].strip()
    if accel and (not accel.startswith("/") or not accel.endswith("/") or " " in accel):
        raise SettingsError(
            f"{_BY_NAME['accel_redirect'].env} must be empty or a path starting and ending "
            "with / (such as /_fhirbin_content/)"
        )
    values["accel_redirect"] = accel
    if values["base_url"].endswith("/"):
        values["base_url"] = values["base_url"].rstrip("/")


def load_settings(
    env: Mapping[str, str] | None = None, overrides: Mapping[str, Any] | None = None
) -> Settings:
    """Defaults, then ``FHIRBIN_*`` variables from ``env``, then explicit ``overrides``.

    ``overrides`` holds already-typed values (from CLI flags); ``None`` values are skipped so an
    unset flag leaves the environment's value in force.
    """
    values: dict[str, Any] = {s.name: s.default for s in SETTINGS}
    for setting in SETTINGS:
        if env is not None and setting.env in env:
            values[setting.name] = setting.parse(env[setting.env])
    for name, value in (overrides or {}).items():
        if name not in _BY_NAME:
            raise SettingsError(f"unknown setting {name!r}")
        if value is not None:
            values[name] = value
    _validate(values)
    return Settings(**values)


def settings_markdown() -> str:
    """The configuration table of docs/configuration.md and the README."""
    rows = ["| Environment variable | Flag | Type | Default | Meaning |", "|---|---|---|---|---|"]
    for s in SETTINGS:
        flag = f"`{s.flag}`" if s.serve_flag else ""
        default = s.default if s.default != Path("") else ""
        rows.append(f"| `{s.env}` | {flag} | {s.type.__name__} | `{default}` | {s.help} |")
    return "\n".join(rows) + "\n"


# Keep the dataclass and the table in step: a row without a field (or the reverse) is a bug.
assert {f.name for f in dataclasses.fields(Settings)} == set(_BY_NAME)
