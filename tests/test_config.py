"""The settings table: env names, parsing, precedence, validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from fhirbin.config import SETTINGS, SettingsError, load_settings


def test_defaults() -> None:
    settings = load_settings({})
    assert settings.port == 8080
    assert settings.access_token_ttl == 300
    assert settings.public_base_url == "http://127.0.0.1:8080/fhir"
    assert settings.database_path == Path("data/fhirbin.db")


def test_environment_then_overrides() -> None:
    env = {"FHIRBIN_PORT": "9000", "FHIRBIN_DATA_DIR": "/srv/x", "FHIRBIN_ACCESS_TOKEN_TTL": "60"}
    settings = load_settings(env, {"port": 9100, "data_dir": None})
    assert settings.port == 9100  # a flag beats the environment
    assert settings.data_dir == Path("/srv/x")  # an unset flag leaves the environment in force
    assert settings.access_token_ttl == 60


def test_every_setting_has_a_fhirbin_env_name() -> None:
    assert all(s.env == "FHIRBIN_" + s.name.upper() for s in SETTINGS)


@pytest.mark.parametrize(
    "env",
    [{"FHIRBIN_PORT": "eighty"}, {"FHIRBIN_PORT": "0"}, {"FHIRBIN_ACCESS_TOKEN_TTL": "-1"}],
)
def test_bad_values_name_the_variable(env: dict[str, str]) -> None:
    with pytest.raises(SettingsError, match=next(iter(env))):
        load_settings(env)


def test_base_url_wins_and_loses_its_trailing_slash() -> None:
    settings = load_settings({"FHIRBIN_BASE_URL": "https://fhir.example.org/fhir/"})
    assert settings.public_base_url == "https://fhir.example.org/fhir"


def test_wildcard_host_gives_a_usable_base_url() -> None:
    assert (
        load_settings({"FHIRBIN_HOST": "0.0.0.0"}).public_base_url == "http://127.0.0.1:8080/fhir"
    )


def test_log_format_is_auto_json_or_text() -> None:
    assert load_settings({}).log_format == "auto"
    assert load_settings({"FHIRBIN_LOG_FORMAT": "json"}).log_format == "json"
    with pytest.raises(SettingsError, match="FHIRBIN_LOG_FORMAT"):
        load_settings({"FHIRBIN_LOG_FORMAT": "xml"})
