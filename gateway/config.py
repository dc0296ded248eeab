"""One frozen, typed configuration, built at the edge from an explicit mapping.

Sources, later ones winning: built-in defaults, the TOML file ``lienthong.toml`` in the data directory (or
the file named by ``LIENTHONG_CONFIG``), the ``LIENTHONG_*`` environment variables, then command-line
options. Only the entry points (``gateway.cli``, the WSGI factory) read ``os.environ``; they pass it here
as a plain mapping, so tests pass a dict.

- ``LIENTHONG_HOME`` (no file key): the data directory (default ``./lienthong-data``).
- ``LIENTHONG_DATABASE_URL`` / ``database_url``: SQLAlchemy URL (default: the SQLite file
  ``lienthong.db`` in the data directory).
- ``LIENTHONG_MAX_PACKET_BYTES`` / ``max_packet_bytes``: the largest packet accepted (64 MiB).
- ``LIENTHONG_TIMEZONE`` / ``timezone``: the agencies' clock for date filters (``Asia/Ho_Chi_Minh``).
- ``LIENTHONG_LOG_LEVEL`` / ``log_level``: ``INFO``.
- ``LIENTHONG_SCHEMA_DIR`` / ``schema_dir``: where the edXML schemas are (the installed ``xsd/``).
- ``LIENTHONG_PUBLIC_URL`` / ``public_url``: the endpoint address written in the served WSDL (default:
  the address the WSDL was requested at).
- ``LIENTHONG_TRUST_ANCHORS`` / ``trust_anchors``: PEM bundle of the CAs that issue seal certificates
  (default: ``trust-anchors.pem`` in the data directory, if present).
- ``LIENTHONG_SEAL_SUBJECT_ATTRIBUTE`` / ``seal_subject_attribute``: subject attribute carrying the agency
  code in seal certificates (e.g. ``UID``); unset, seals bind through registered certificates only.
- ``LIENTHONG_ALLOW_SHA1`` / ``allow_sha1``: accept RSA-SHA1 seals from every agency (``false``).
- ``LIENTHONG_GATEWAY_KEY`` / ``gateway_key``, ``LIENTHONG_GATEWAY_CERT`` / ``gateway_cert``: the gateway's
  own key and certificate, which sign its responses (default: ``gateway-key.pem`` / ``gateway-cert.pem`` in
  the data directory, made for testing by ``lienthong init``).
- ``LIENTHONG_CLOCK_SKEW`` / ``clock_skew``: tolerated clock difference for signed requests (300 s).
- ``LIENTHONG_WORKING_DAYS`` / ``working_days``: the agencies' working days for the same-day rule
  (``mon-fri``; e.g. ``mon-fri,sat``).
- ``LIENTHONG_CUTOFF`` / ``cutoff``: the end of the working day, ``HH:MM`` in ``timezone`` (``17:00``).
- ``LIENTHONG_CHECKPOINT_EVERY`` / ``checkpoint_every``: sign an audit checkpoint after this many entries
  (1000).
- ``LIENTHONG_EVIDENCE`` / ``evidence``: keep receipts and the audit chain (``true``); ``false`` only to
  measure what they cost.
- ``LIENTHONG_COMPUTE_SLOTS`` / ``compute_slots``: requests a worker process computes at once once their
  body is read (1); its threads still read and answer side by side (see :mod:`gateway.soap.guard`).
- ``LIENTHONG_FLUSH_FETCH_MARKS`` / ``flush_fetch_marks``: on SQLite, wait for the disk when getEdoc records
  a first fetch (``true``). ``false`` commits that mark without the flush: fewer flushes holding up the
  other writers, but a crash of the machine may forget the newest fetch marks (never a packet, a status,
  an acknowledgement or a receipt), and an acknowledgement that follows does not bring the "delivered"
  evidence back; see :meth:`gateway.store.db.Database.unit_of_work`.
- ``LIENTHONG_HOLIDAYS`` / ``holidays``: public holidays, ``YYYY-MM-DD`` separated by commas (a TOML list
  in the file); none by default.

All problems are reported together in one :class:`~gateway.errors.ConfigError`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from gateway.core.workdays import WorkingCalendar, parse_days
from gateway.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

DEFAULT_MAX_PACKET_BYTES = 64 * 1024 * 1024
DEFAULT_TIMEZONE = "Asia/Ho_Chi_Minh"
CONFIG_FILE_NAME = "lienthong.toml"


def _redact_url(url: str) -> str:
    """Hide the password of a database URL (``scheme://user:***@host/db``)."""
    if "://" not in url or "@" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    if ":" in creds:
        creds = creds.split(":", 1)[0] + ":***"
    return f"{scheme}://{creds}@{host}"


def _flag(value: Any, default: bool, name: str, problems: list[str]) -> bool:
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    text = str(value).lower()
    if text not in {"true", "false", "1", "0", "yes", "no", "on", "off"}:
        problems.append(f"{name} must be true or false, got {value!r}")
        return default
    return text in {"true", "1", "yes", "on"}


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything the gateway needs to run. Build it with :meth:`from_sources`."""

    data_dir: Path
    database_url: str
    max_packet_bytes: int = DEFAULT_MAX_PACKET_BYTES
    timezone: str = DEFAULT_TIMEZONE
    log_level: str = "INFO"
    schema_dir: Path | None = None
    public_url: str | None = None
    #: PEM bundle of the CAs whose certificates may seal packets (the government CA)
    trust_anchors: Path | None = None
    #: a subject attribute (e.g. ``UID`` or a dotted OID) that carries the agency code in its seal
    #: certificates; without it, seals bind to agencies only through registered certificates
    seal_subject_attribute: str | None = None
    #: accept RSA-SHA1/SHA-1 seals from every agency (off; per-agency consent is `lienthong agency set`)
    allow_sha1: bool = False
    #: the gateway's own key and certificate (default: gateway-key.pem / gateway-cert.pem in the data dir)
    gateway_key: Path | None = None
    gateway_cert: Path | None = None
    #: tolerated clock difference for signed requests' timestamps, in seconds
    clock_skew: int = 300
    #: working days (Monday 0), the daily cut-off and holidays: the same-day rule's calendar
    working_days: frozenset[int] = frozenset(range(5))
    cutoff: dt.time = dt.time(17, 0)
    holidays: frozenset[dt.date] = frozenset()
    #: receipts and the audit chain (off only for measurements), and the checkpoint interval in entries
    evidence: bool = True
    checkpoint_every: int = 1000
    #: requests a worker process computes at once (its threads still read and write side by side)
    compute_slots: int = 1
    #: SQLite: flush getEdoc's first-fetch marks to disk before answering (off: the next flushed commit does)
    flush_fetch_marks: bool = True

    @property
    def calendar(self) -> WorkingCalendar:
        return WorkingCalendar(self.timezone, self.working_days, self.cutoff, self.holidays)

    @property
    def crl_dir(self) -> Path:
        """CRLs loaded by the gateway (``lienthong crl add`` puts them here)."""
        return self.data_dir / "crls"

    def __repr__(self) -> str:  # the URL may carry a password
        return (
            f"Config(data_dir={str(self.data_dir)!r}, database_url={_redact_url(self.database_url)!r}, "
            f"max_packet_bytes={self.max_packet_bytes}, timezone={self.timezone!r}, "
            f"log_level={self.log_level!r}, schema_dir={self.schema_dir!r}, public_url={self.public_url!r}, "
            f"trust_anchors={self.trust_anchors!r}, seal_subject_attribute={self.seal_subject_attribute!r}, "
            f"allow_sha1={self.allow_sha1})"
        )

    __str__ = __repr__

    @property
    def max_request_bytes(self) -> int:
        """The largest SOAP request: a base64 packet (4/3 of its size) plus room for the envelope."""
        return (self.max_packet_bytes * 4 + 2) // 3 + 256 * 1024

    def redacted_database_url(self) -> str:
        return _redact_url(self.database_url)

    @classmethod
    def from_sources(
        cls,
        environ: Mapping[str, str],
        *,
        data_dir: str | Path | None = None,
        database_url: str | None = None,
        overrides: Mapping[str, Any] | None = None,
    ) -> Config:
        """Build the config from the environment mapping, the config file and explicit options."""
        problems: list[str] = []
        home = Path(data_dir or environ.get("LIENTHONG_HOME") or "lienthong-data").expanduser().absolute()

        file_values: dict[str, Any] = {}
        cfg_file = environ.get("LIENTHONG_CONFIG")
        path = Path(cfg_file) if cfg_file else home / CONFIG_FILE_NAME
        if path.is_file():
            try:
                file_values = tomllib.loads(path.read_text(encoding="utf-8"))
            except (OSError, tomllib.TOMLDecodeError) as exc:
                problems.append(f"config file {path}: {exc}")
        elif cfg_file:
            problems.append(f"LIENTHONG_CONFIG names {path}, which does not exist")

        known = {
            "database_url", "max_packet_bytes", "timezone", "log_level", "schema_dir", "public_url",
            "trust_anchors", "seal_subject_attribute", "allow_sha1", "gateway_key", "gateway_cert", "clock_skew",
            "working_days", "cutoff", "holidays", "evidence", "checkpoint_every",
            "compute_slots", "flush_fetch_marks",
        }  # fmt: skip
        for key in sorted(set(file_values) - known):
            problems.append(f"config file {path}: unknown key {key!r} (known: {', '.join(sorted(known))})")

        def pick(key: str, env: str) -> Any:
            value = (overrides or {}).get(key)
            if value is None:
                value = environ.get(env)
            if value is None:
                value = file_values.get(key)
            return value

        db_url = database_url or pick("database_url", "LIENTHONG_DATABASE_URL")
        if not db_url:
            db_url = f"sqlite:///{home / 'lienthong.db'}"

        max_packet: Any = pick("max_packet_bytes", "LIENTHONG_MAX_PACKET_BYTES")
        if max_packet is None:
            max_packet = DEFAULT_MAX_PACKET_BYTES
        try:
            max_packet = int(max_packet)
            if max_packet < 1024:
                problems.append(f"max_packet_bytes must be at least 1024, got {max_packet}")
        except (TypeError, ValueError):
            problems.append(f"max_packet_bytes must be a whole number of bytes, got {max_packet!r}")
            max_packet = DEFAULT_MAX_PACKET_BYTES

        tz = pick("timezone", "LIENTHONG_TIMEZONE") or DEFAULT_TIMEZONE
        try:
            ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            problems.append(f"timezone {tz!r} is not a known IANA time zone")

        level = str(pick("log_level", "LIENTHONG_LOG_LEVEL") or "INFO").upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            problems.append(f"log_level must be DEBUG, INFO, WARNING or ERROR, got {level!r}")

        schema_dir = pick("schema_dir", "LIENTHONG_SCHEMA_DIR")
        if schema_dir is not None and not Path(schema_dir).is_dir():
            problems.append(f"schema_dir {schema_dir} is not a directory")

        public_url = pick("public_url", "LIENTHONG_PUBLIC_URL")
        if public_url is not None and not str(public_url).startswith(("http://", "https://")):
            problems.append(f"public_url must start with http:// or https://, got {public_url!r}")

        trust = pick("trust_anchors", "LIENTHONG_TRUST_ANCHORS")
        if trust is None and (home / "trust-anchors.pem").is_file():
            trust = home / "trust-anchors.pem"
        if trust is not None and not Path(trust).is_file():
            problems.append(f"trust_anchors {trust} is not a file (a PEM bundle of CA certificates)")

        attribute = pick("seal_subject_attribute", "LIENTHONG_SEAL_SUBJECT_ATTRIBUTE") or None

        allow_sha1: Any = pick("allow_sha1", "LIENTHONG_ALLOW_SHA1")
        if isinstance(allow_sha1, str):
            if allow_sha1.lower() not in {"true", "false", "1", "0", "yes", "no", "on", "off"}:
                problems.append(f"allow_sha1 must be true or false, got {allow_sha1!r}")
            allow_sha1 = allow_sha1.lower() in {"true", "1", "yes", "on"}

        gateway_key = pick("gateway_key", "LIENTHONG_GATEWAY_KEY")
        gateway_cert = pick("gateway_cert", "LIENTHONG_GATEWAY_CERT")
        for name, value in (("gateway_key", gateway_key), ("gateway_cert", gateway_cert)):
            if value is not None and not Path(value).is_file():
                problems.append(f"{name} {value} is not a file")
        skew: Any = pick("clock_skew", "LIENTHONG_CLOCK_SKEW")
        try:
            skew = int(skew) if skew is not None else 300
            if not 0 <= skew <= 3600:
                problems.append(f"clock_skew must be 0–3600 seconds, got {skew}")
        except (TypeError, ValueError):
            problems.append(f"clock_skew must be a whole number of seconds, got {skew!r}")
            skew = 300

        working_days = frozenset(range(5))
        days_text = pick("working_days", "LIENTHONG_WORKING_DAYS")
        if days_text is not None:
            try:
                working_days = parse_days(str(days_text))
            except ValueError as exc:
                problems.append(f"working_days: {exc}")
        cutoff = dt.time(17, 0)
        cutoff_text = pick("cutoff", "LIENTHONG_CUTOFF")
        if cutoff_text is not None:
            try:
                cutoff = dt.time.fromisoformat(str(cutoff_text))
                if cutoff.tzinfo is not None:
                    raise ValueError("a zone")
            except ValueError:
                problems.append(
                    f"cutoff must be a time of day HH:MM (in timezone, no offset), got {cutoff_text!r}"
                )
        holidays: set[dt.date] = set()
        raw_holidays = pick("holidays", "LIENTHONG_HOLIDAYS") or []
        if isinstance(raw_holidays, str):
            raw_holidays = [h for h in raw_holidays.split(",") if h.strip()]
        for item in raw_holidays if isinstance(raw_holidays, list) else [raw_holidays]:
            try:
                holidays.add(item if isinstance(item, dt.date) else dt.date.fromisoformat(str(item).strip()))
            except ValueError:
                problems.append(f"holidays: {item!r} is not a date YYYY-MM-DD")
        evidence = _flag(pick("evidence", "LIENTHONG_EVIDENCE"), True, "evidence", problems)
        flush_fetch_marks = _flag(
            pick("flush_fetch_marks", "LIENTHONG_FLUSH_FETCH_MARKS"), True, "flush_fetch_marks", problems
        )
        every: Any = pick("checkpoint_every", "LIENTHONG_CHECKPOINT_EVERY")
        try:
            every = int(every) if every is not None else 1000
            if every < 1:
                problems.append(f"checkpoint_every must be at least 1, got {every}")
        except (TypeError, ValueError):
            problems.append(f"checkpoint_every must be a whole number of entries, got {every!r}")
            every = 1000
        slots: Any = pick("compute_slots", "LIENTHONG_COMPUTE_SLOTS")
        try:
            slots = int(slots) if slots is not None else 1
            if not 1 <= slots <= 64:
                problems.append(f"compute_slots must be 1–64, got {slots}")
        except (TypeError, ValueError):
            problems.append(f"compute_slots must be a whole number of requests, got {slots!r}")
            slots = 1
        if problems:
            raise ConfigError(problems)
        return cls(
            data_dir=home,
            database_url=str(db_url),
            max_packet_bytes=max_packet,
            timezone=tz,
            log_level=level,
            schema_dir=Path(schema_dir) if schema_dir else None,
            public_url=str(public_url) if public_url else None,
            trust_anchors=Path(trust) if trust else None,
            seal_subject_attribute=str(attribute) if attribute else None,
            allow_sha1=bool(allow_sha1),
            gateway_key=Path(gateway_key) if gateway_key else None,
            gateway_cert=Path(gateway_cert) if gateway_cert else None,
            clock_skew=skew,
            working_days=working_days,
            cutoff=cutoff,
            holidays=frozenset(holidays),
            evidence=evidence,
            checkpoint_every=every,
            compute_slots=slots,
            flush_fetch_marks=flush_fetch_marks,
        )
