"""Secrets, the typed config and the error tree."""

from __future__ import annotations

import re

import pytest

from gateway import errors
from gateway.config import Config
from gateway.core.credentials import MIN_SECRET_LENGTH, check_secret, hash_secret
from gateway.systems import generate_secret, store_secret


def test_secrets_are_long_random_and_stored_only_hashed():
    secret = generate_secret()
    assert len(secret) >= MIN_SECRET_LENGTH
    assert generate_secret() != secret
    stored = store_secret(secret)
    assert stored == hash_secret(secret, bytes.fromhex(stored.split("$")[1]))
    assert secret not in stored
    assert check_secret(secret, stored)
    assert not check_secret(secret + "x", stored)
    assert not check_secret(secret, "garbage")
    # salted: the same secret hashes differently each time
    assert store_secret(secret) != stored


def test_config_defaults_from_an_empty_mapping(tmp_path):
    config = Config.from_sources({}, data_dir=tmp_path)
    assert config.data_dir == tmp_path
    assert config.database_url == f"sqlite:///{tmp_path / 'lienthong.db'}"
    assert config.max_request_bytes > config.max_packet_bytes


def test_config_from_environment_mapping_and_file(tmp_path):
    (tmp_path / "lienthong.toml").write_text('max_packet_bytes = 2048\ntimezone = "UTC"\n')
    config = Config.from_sources(
        {"LIENTHONG_HOME": str(tmp_path), "LIENTHONG_DATABASE_URL": "postgresql+psycopg://u:pw@h/db"}
    )
    assert config.max_packet_bytes == 2048
    assert config.timezone == "UTC"
    assert "pw" not in repr(config)
    assert "u:***@h" in repr(config)


def test_config_reports_every_problem_at_once(tmp_path):
    with pytest.raises(errors.ConfigError) as caught:
        Config.from_sources(
            {
                "LIENTHONG_MAX_PACKET_BYTES": "lots",
                "LIENTHONG_TIMEZONE": "Mars/Base",
                "LIENTHONG_LOG_LEVEL": "x",
            },
            data_dir=tmp_path,
        )
    assert len(caught.value.problems) == 3


def test_fault_codes_are_unique_dotted_and_stable():
    codes = errors.all_fault_codes()
    assert len(codes) == len(set(codes))
    for code in codes:
        assert re.fullmatch(r"(Client|Server)(\.[A-Z][A-Za-z]+)+", code), code
    # codes other tools rely on
    for code in (
        "Client.Packet.NotXml",
        "Client.Packet.DtdForbidden",
        "Client.Packet.TooLarge",
        "Client.Packet.NotEdxml",
        "Client.Packet.SchemaInvalid",
        "Client.Packet.DuplicateDocumentId",
        "Client.Routing.UnknownRecipient",
        "Client.Routing.InactiveRecipient",
        "Client.Routing.StatusForUnknownDocument",
        "Client.Auth.MissingCredentials",
        "Client.Auth.InvalidCredentials",
        "Client.Auth.SenderNotAllowed",
        "Client.Access.NotAddressee",
        "Client.Doc.NotFound",
        "Server.Database.Unavailable",
    ):
        assert code in codes
