"""The one settings table.

Every setting fhirbin has is a row of ``SETTINGS``: its name, type, default and help text. The
CLI flags of ``fhirbin serve``, the ``FHIRBIN_<NAME>`` environment variables and
docs/configuration.md are all generated from this table, and ``Settings`` is the frozen value
built from it. Only ``cli.py`` reads the environment; everything else receives a ``Settings``.
"""

from __future__ import annotations

import dataclasses
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
        "Folder holding the SQLite catalogue (fhirbin.db), the content (blobs/) and the "
        "token signing key.",
        serve_flag=True,
    ),
    Setting(
        "base_url",
        str,
        "",
        "Public FHIR base URL (e.g. https://fhir.example.org/fhir). Used in Location headers, "
        "Bundle links and as the access-token audience. Empty: derived from each request's "
        "Host header, which is only right when clients reach the server directly.",
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
        "signing_key",
        Path,
        Path(""),
        "PEM file with the EC P-256 private key that signs access tokens. Empty: "
        "<data-dir>/signing-key.pem, generated on first start.",
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
        1,
        "Number of server worker processes.",
        serve_flag=True,
    ),
    Setting("log_level", str, "info", "Log level: debug, info, warning or error."),
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
    signing_key: Path
    revocation_check_interval: int
    workers: int
    log_level: str

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
    def database_url(self) -> str:
        return f"sqlite+aiosqlite:///{self.database_path}"

    @property
    def database_path(self) -> Path:
        return self.data_dir / "fhirbin.db"

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "blobs"

    @property
    def signing_key_path(self) -> Path:
        if str(self.signing_key) in ("", "."):
            return self.data_dir / "signing-key.pem"
        return self.signing_key


def _validate(values: dict[str, Any]) -> None:
    if values["access_token_ttl"] <= 0:
        raise SettingsError(f"{_BY_NAME['access_token_ttl'].env} must be positive")
    if values["max_binary_size"] < 0:
        raise SettingsError(f"{_BY_NAME['max_binary_size'].env} must not be negative")
    if not 0 < values["port"] < 65536:
        raise SettingsError(f"{_BY_NAME['port'].env} must be between 1 and 65535")
    if values["workers"] < 1:
        raise SettingsError(f"{_BY_NAME['workers'].env} must be at least 1")
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
