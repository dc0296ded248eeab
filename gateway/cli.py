"""``lienthong``: the operator's command.

The data directory comes from ``--data-dir`` or ``LIENTHONG_HOME``; the database URL from
``--database-url`` or ``LIENTHONG_DATABASE_URL`` (default: SQLite in the data directory). This is the only
module, with the WSGI entry, that reads ``os.environ``; it passes it to :class:`gateway.config.Config`.

Exit codes: 0 success, 1 the command failed (the reason is printed), 2 wrong usage.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from zoneinfo import ZoneInfo

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from gateway import errors
from gateway.config import Config

# Wide tables when the output goes to a file or a pipe (rich would otherwise assume 80 columns).
out = Console(width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 200)


def _config(args: argparse.Namespace) -> Config:
    return Config.from_sources(os.environ, data_dir=args.data_dir, database_url=args.database_url)


def _db(config: Config):  # type: ignore[no-untyped-def]
    from gateway.store.db import Database

    return Database(config.database_url)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _audit(session, kind: str, **content: object) -> None:  # type: ignore[no-untyped-def]
    """An operator's change, in the audit chain, in the same transaction as the change."""
    from gateway import evidence

    evidence.append(session, kind, _now(), operator=os.environ.get("USER") or "operator", **content)


# --- commands -------------------------------------------------------------------------------------------


def cmd_init(args: argparse.Namespace) -> int:
    config = _config(args)
    config.data_dir.mkdir(parents=True, exist_ok=True)
    from gateway.store.migrate import upgrade

    db = _db(config)
    upgrade(db)
    from gateway.keystore import make_test_key

    made = make_test_key(config)
    if made:
        from gateway.core.trust import fingerprint_sha256

        with db.unit_of_work(write=True) as session:
            _audit(
                session,
                "key",
                action="gateway-test-key",
                fingerprint=fingerprint_sha256(_read_certificate(str(made[1]))),
            )
            session.commit()
    out.print(f"data directory {config.data_dir}")
    if made:
        out.print(f"[yellow]TEST gateway key (not for production)[/yellow]: {made[0]}, certificate {made[1]}")
    out.print(f"database {config.redacted_database_url()} is at the newest schema")
    return 0


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from gateway.store.migrate import current_revision, upgrade

    db = _db(_config(args))
    before = current_revision(db)
    upgrade(db, args.revision)
    out.print(f"database schema: {before or 'empty'} → {current_revision(db)}")
    return 0


def cmd_agency_add(args: argparse.Namespace) -> int:
    from gateway.axis import AgencyInfo, upsert_agency

    db = _db(_config(args))
    with db.unit_of_work(write=True) as session:
        agency = upsert_agency(
            session,
            AgencyInfo(args.code, args.name, args.parent, args.email, args.old_code, True),
            _now(),
        )
        _audit(session, "directory", action="register", agency=agency.code)
        session.commit()
    out.print(f"agency {agency.code} ({agency.name}) is registered and active")
    return 0


def cmd_agency_list(args: argparse.Namespace) -> int:
    from gateway.store import repo

    db = _db(_config(args))
    with db.unit_of_work() as session:
        rows = [
            {
                "code": a.code,
                "name": a.name,
                "parentCode": a.parent_code,
                "email": a.email,
                "oldCode": a.old_code,
                "active": a.active,
                "requireSignature": a.require_signature,
                "allowSha1": a.allow_sha1,
                "certificates": [c.fingerprint for c in a.certificates],
            }
            for a in repo.list_agencies(session, args.filter)
        ]
    if args.json:
        print(json.dumps(rows, ensure_ascii=False, indent=2))
        return 0
    table = Table(title=f"{len(rows)} agencies")
    for col in (
        "code",
        "name",
        "parent",
        "email",
        "old code",
        "active",
        "require-signature",
        "sha-1",
        "seals",
    ):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r["code"],
            r["name"],
            r["parentCode"] or "",
            r["email"] or "",
            r["oldCode"] or "",
            "yes" if r["active"] else "no",
            "on" if r["requireSignature"] else "OFF",
            "allowed" if r["allowSha1"] else "no",
            str(len(r["certificates"])),
        )
    out.print(table)
    return 0


def cmd_agency_disable(args: argparse.Namespace) -> int:
    from gateway.axis import deactivate_agency

    db = _db(_config(args))
    with db.unit_of_work(write=True) as session:
        deactivate_agency(session, args.code, _now())
        _audit(session, "directory", action="deactivate", agency=args.code)
        session.commit()
    out.print(f"agency {args.code} is disabled: it stays in the directory but receives nothing")
    return 0


def _on_off(value: str) -> bool:
    value = value.lower()
    if value not in ("on", "off"):
        raise argparse.ArgumentTypeError("expected on or off")
    return value == "on"


def cmd_agency_set(args: argparse.Namespace) -> int:
    from gateway.store import repo

    if args.require_signature is None and args.allow_sha1 is None:
        raise errors.UsageError("nothing to set: give --require-signature and/or --allow-sha1")
    db = _db(_config(args))
    with db.unit_of_work(write=True) as session:
        agency = repo.get_agency(session, args.code)
        if agency is None:
            raise errors.UsageError(f"no agency has code {args.code}")
        if args.require_signature is not None:
            agency.require_signature = args.require_signature
        if args.allow_sha1 is not None:
            agency.allow_sha1 = args.allow_sha1
        agency.updated_at = _now()
        _audit(
            session,
            "directory",
            action="seal-policy",
            agency=args.code,
            requireSignature=agency.require_signature,
            allowSha1=agency.allow_sha1,
        )
        session.commit()
        state = (agency.require_signature, agency.allow_sha1)
    out.print(
        f"agency {args.code}: require-signature {'on' if state[0] else 'OFF'}, "
        f"SHA-1 seals {'accepted' if state[1] else 'refused'}"
    )
    if not state[0]:
        err.print(f"[yellow]warning:[/yellow] unsigned packets from {args.code} will be accepted")
    return 0


def cmd_agency_cert_add(args: argparse.Namespace) -> int:
    from cryptography import x509

    from gateway.core.trust import fingerprint_sha256, subject_text
    from gateway.store import repo
    from gateway.store.models import AgencyCertificate

    try:
        data = Path(args.cert).read_bytes()
        cert = (
            x509.load_pem_x509_certificate(data)
            if b"-----BEGIN" in data
            else x509.load_der_x509_certificate(data)
        )
    except (OSError, ValueError) as exc:
        raise errors.UsageError(f"cannot read a certificate from {args.cert}: {exc}") from None

    db = _db(_config(args))
    with db.unit_of_work(write=True) as session:
        if repo.get_agency(session, args.code) is None:
            raise errors.UsageError(f"no agency has code {args.code}")
        fp = fingerprint_sha256(cert)
        existing = session.get(AgencyCertificate, fp)
        if existing is not None and existing.agency_code != args.code:
            raise errors.UsageError(f"this certificate is already registered for {existing.agency_code}")
        if existing is None:
            session.add(AgencyCertificate.of(args.code, cert, _now()))
            _audit(session, "key", action="seal-certificate", agency=args.code, fingerprint=fp)
        session.commit()
    out.print(
        f"seal certificate {fp[:16]}… ({subject_text(cert)}, valid until "
        f"{cert.not_valid_after_utc:%Y-%m-%d}) registered for {args.code}"
    )
    return 0


def cmd_crl_add(args: argparse.Namespace) -> int:
    import shutil

    from gateway.core.trust import TrustStore

    config = _config(args)
    data = Path(args.file).read_bytes()
    try:
        store = TrustStore.from_pem(b"", [data])
    except ValueError as exc:
        raise errors.UsageError(f"{args.file} is not a CRL: {exc}") from None
    if not store.crls:
        raise errors.UsageError(f"{args.file} holds no CRL")
    config.crl_dir.mkdir(parents=True, exist_ok=True)
    target = config.crl_dir / (Path(args.file).stem + (".pem" if b"-----BEGIN" in data else ".crl"))
    shutil.copyfile(args.file, target)
    revoked = sum(len(list(c)) for c in store.crls)
    db = _db(config)
    with db.unit_of_work(write=True) as session:
        _audit(session, "key", action="crl", issuer=store.crls[0].issuer.rfc4514_string(), revoked=revoked)
        session.commit()
    out.print(
        f"CRL of {store.crls[0].issuer.rfc4514_string()} ({revoked} revoked) loaded as {target}; "
        f"running gateways pick it up on their next request"
    )
    return 0


def cmd_pki(args: argparse.Namespace) -> int:
    from gateway import pki

    agencies = []
    for spec in args.agency or [
        "000.00.00.G22=Văn phòng Chính phủ",
        "000.00.00.H41=UBND tỉnh Nghệ An",
        "000.00.00.H49=UBND tỉnh Quảng Ninh",
    ]:
        code, _, name = spec.partition("=")
        agencies.append((code.strip(), (name or code).strip()))
    paths = pki.write_test_pki(Path(args.out), agencies, key_type=args.key_type)
    out.print(
        f"[bold yellow]TEST MATERIAL — NOT FOR PRODUCTION[/bold yellow]: test CA and seal certificates "
        f"in {args.out}"
    )
    for name, path in sorted(paths.items()):
        out.print(f"  {name}: {path}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    import datetime as _dt

    from gateway.config import Config
    from gateway.core.packet import Limits, check_packet, packet_fields
    from gateway.core.seal import SealPolicy, verify_seal
    from gateway.core.trust import TrustStore, subject_attribute
    from gateway.resources import load_schemas

    config = Config.from_sources(os.environ, data_dir=args.data_dir, database_url=args.database_url)
    trust_file = Path(args.trust) if args.trust else config.trust_anchors
    if trust_file is None:
        raise errors.UsageError("no trust anchors: give --trust CA.pem (or configure trust_anchors)")
    crls = [p.read_bytes() for p in sorted(config.crl_dir.glob("*"))] if config.crl_dir.is_dir() else []
    crls += [Path(c).read_bytes() for c in args.crl or []]
    store = TrustStore.from_pem(Path(trust_file).read_bytes(), crls)
    schemas = load_schemas(config.schema_dir)
    at = _dt.datetime.now(_dt.timezone.utc)
    reports, failed = [], 0
    for name in args.files:
        report: dict = {"file": name}
        try:
            data = Path(name).read_bytes()
            tree = check_packet(data, schemas, Limits(max(config.max_packet_bytes, len(data))))
            report["agency"] = packet_fields(tree.getroot(), data).from_organ
            seal = verify_seal(tree, policy=SealPolicy(allow_sha1=args.allow_sha1), trust=store, at=at)
            packet = packet_fields(seal.root, data)
            attribute = config.seal_subject_attribute or "UID"
            report.update(
                {
                    "valid": True,
                    "agency": packet.from_organ,
                    "signer": seal.subject,
                    "serial": seal.serial,
                    "fingerprint": seal.fingerprint,
                    "signatureAlgorithm": seal.signature_algorithm,
                    "digestAlgorithm": seal.digest_algorithm,
                    "canonicalization": seal.c14n_algorithm,
                    "notBefore": seal.signer.not_valid_before_utc.isoformat(),
                    "notAfter": seal.signer.not_valid_after_utc.isoformat(),
                    "signerAgencyAttribute": subject_attribute(seal.signer, attribute),
                    "legacySha1": seal.legacy_sha1,
                    "sha256": packet.sha256,
                }
            )
        except (errors.LienthongError, OSError) as exc:
            failed += 1
            code = getattr(exc, "code", "Local.Io")
            report.update({"valid": False, "code": code, "reason": getattr(exc, "message", str(exc))})
        reports.append(report)
    if args.json:
        print(json.dumps(reports, ensure_ascii=False, indent=2))
    else:
        for r in reports:
            if r["valid"]:
                out.print(f"[green]VALID[/green]   {escape(r['file'])}")
                out.print(
                    f"        agency {r['agency']}; signer {escape(r['signer'])} (serial {r['serial']})"
                )
                out.print(
                    f"        {r['signatureAlgorithm']}, digest {r['digestAlgorithm']}, "
                    f"{r['canonicalization']}; certificate valid {r['notBefore'][:10]} – {r['notAfter'][:10]}"
                )
                if r["legacySha1"]:
                    out.print("        [yellow]legacy SHA-1 seal[/yellow]")
            else:
                out.print(f"[red]INVALID[/red] {escape(r['file'])}: {r['code']}: {escape(r['reason'])}")
    return 1 if failed else 0


def _read_certificate(path: str):  # type: ignore[no-untyped-def]
    from cryptography import x509

    try:
        data = Path(path).read_bytes()
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except (OSError, ValueError) as exc:
        raise errors.UsageError(f"cannot read a certificate from {path}: {exc}") from None


def _system_certificate(system_id: str, cert):  # type: ignore[no-untyped-def]
    from gateway.store.models import SystemCertificate

    return SystemCertificate.of(system_id, cert, _now())


def cmd_system_add(args: argparse.Namespace) -> int:
    from gateway.core.credentials import MIN_SECRET_LENGTH
    from gateway.core.trust import fingerprint_sha256
    from gateway.store import repo
    from gateway.store.models import System, SystemCertificate
    from gateway.systems import generate_secret, store_secret

    certs = [_read_certificate(p) for p in args.cert or []]
    auth = args.auth or ("x509" if certs else "username-token")
    if auth == "x509" and not certs:
        raise errors.UsageError("an X.509 system needs its certificate: --cert CERT.pem")
    secret = None
    if args.generate_secret:
        secret = generate_secret()
    elif args.secret_file:
        try:
            secret = Path(args.secret_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise errors.UsageError(f"cannot read the secret file: {exc}") from None
        if len(secret) < MIN_SECRET_LENGTH:
            raise errors.UsageError(
                f"the secret in {args.secret_file} has {len(secret)} characters; at least "
                f"{MIN_SECRET_LENGTH} random characters are required (use --generate-secret)"
            )
    if auth == "username-token" and secret is None:
        raise errors.UsageError(
            "a username-token system needs a secret: --secret-file F or --generate-secret"
        )
    db = _db(_config(args))
    with db.unit_of_work(write=True) as session:
        unknown = [code for code in args.agency if repo.get_agency(session, code) is None]
        if unknown:
            raise errors.UsageError(
                f"unknown agency {', '.join(unknown)}: add it with 'lienthong agency add'"
            )
        if repo.get_system(session, args.system_id) is not None:
            raise errors.UsageError(f"system {args.system_id} already exists")
        for cert in certs:
            if session.get(SystemCertificate, fingerprint_sha256(cert)) is not None:
                raise errors.UsageError(f"certificate {fingerprint_sha256(cert)[:16]}… is already registered")
        system = System(
            id=args.system_id,
            secret_hash=store_secret(secret) if secret else "",
            auth_method=auth,
            is_admin=args.admin,
            active=True,
            created_at=_now(),
        )
        repo.add_system(session, system, dict.fromkeys(args.agency))
        for cert in certs:
            system.certificates.append(_system_certificate(args.system_id, cert))
        _audit(
            session,
            "directory",
            action="system",
            system=args.system_id,
            agencies=list(dict.fromkeys(args.agency)),
            auth=auth,
            admin=bool(args.admin),
            certificates=[fingerprint_sha256(c) for c in certs],
        )
        session.commit()
    err.print(
        f"system {args.system_id} may act for {', '.join(args.agency)}; authentication {auth}"
        + (" (administrator)" if args.admin else "")
    )
    if args.generate_secret:
        err.print("its secret follows; it is shown only now, store it in the system's secret file:")
        print(secret)
    return 0


def cmd_system_cert_add(args: argparse.Namespace) -> int:
    from gateway.core.trust import fingerprint_sha256
    from gateway.store import repo

    cert = _read_certificate(args.cert)
    db = _db(_config(args))
    with db.unit_of_work(write=True) as session:
        system = repo.get_system(session, args.system_id)
        if system is None:
            raise errors.UsageError(f"no system has id {args.system_id}")
        system.certificates.append(_system_certificate(args.system_id, cert))
        _audit(
            session,
            "key",
            action="system-certificate",
            system=args.system_id,
            fingerprint=fingerprint_sha256(cert),
        )
        session.commit()
    out.print(
        f"certificate registered for system {args.system_id} (valid until {cert.not_valid_after_utc:%Y-%m-%d})"
    )
    return 0


def cmd_system_list(args: argparse.Namespace) -> int:
    from gateway.store import repo

    db = _db(_config(args))
    with db.unit_of_work() as session:
        rows = [
            {
                "id": s.id,
                "agencies": sorted(link.agency_code for link in s.agencies),
                "admin": s.is_admin,
                "active": s.active,
                "auth": s.auth_method,
                "certificates": [c.fingerprint for c in s.certificates],
                "createdAt": s.created_at.isoformat(),
            }
            for s in repo.list_systems(session)
        ]
    if args.json:
        print(json.dumps(rows, ensure_ascii=False, indent=2))
        return 0
    table = Table(title=f"{len(rows)} systems")
    for col in ("system", "agencies", "admin", "active", "authentication"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r["id"],
            ", ".join(r["agencies"]),
            "yes" if r["admin"] else "no",
            "yes" if r["active"] else "no",
            r["auth"],
        )
    out.print(table)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from gateway.server import serve

    config = _config(args)
    if args.fd is None:
        scheme = "https" if args.tls_cert else "http"
        err.print(
            f"lienthong gateway on {scheme}://{args.host}:{args.port}/ (WSDL at /?wsdl), "
            f"{args.workers} workers × {args.threads} threads, database {config.redacted_database_url()}"
        )
    serve(
        config,
        host=args.host,
        port=args.port,
        workers=args.workers,
        threads=args.threads,
        fd=args.fd,
        access_log=args.access_log,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        client_ca=args.client_ca,
        pin_workers=args.pin_workers,
    )
    return 0


def _iso(value: object) -> object:
    return value.isoformat() if isinstance(value, dt.datetime) else value


def _sent_json(r) -> dict:  # type: ignore[no-untyped-def]
    return {
        "recipient": r.recipient,
        "transportState": r.transport_state,
        "deliveredAt": _iso(r.delivered_at),
        "acknowledgedAt": _iso(r.acknowledged_at),
        "failReason": r.fail_reason,
        "businessStatus": r.business_status,
        "businessStatusAt": _iso(r.business_status_at),
        "businessStatusStaff": r.business_status_staff,
        "lifecycle": r.lifecycle,
        "lifecycleAt": _iso(r.lifecycle_at),
        "lifecycleDocId": r.lifecycle_doc_id,
        "dueAt": _iso(r.due_at),
        "answeredAt": _iso(r.answered_at),
    }


def cmd_trace(args: argparse.Namespace) -> int:
    """Everything the gateway knows about one packet's life (the operator sees every recipient)."""
    from gateway.axis import build_trace
    from gateway.store import repo
    from lienthong_client.render import print_trace

    db = _db(_config(args))
    with db.unit_of_work() as session:
        packet = repo.packet_by_doc_id(session, args.doc_id.strip())
        if packet is None:
            raise errors.UsageError(f"no packet has docId {args.doc_id!r}")
        t = build_trace(session, packet, None)
    data = {
        "docId": t.doc_id,
        "messageType": t.message_type,
        "from": t.sender,
        "senderSystem": t.sender_system,
        "documentId": t.document_id,
        "subject": t.subject,
        "statusCode": t.status_code,
        "businessDocType": t.business_doc_type,
        "acceptedAt": _iso(t.accepted_at),
        "originDocId": t.origin_doc_id,
        "answersDocId": t.answers_doc_id,
        "successors": list(t.successors),
        "recipients": [_sent_json(r) for r in t.recipients],
        "events": [
            {
                "at": _iso(e.at),
                "kind": e.kind,
                "recipient": e.recipient,
                "agency": e.agency,
                "system": e.system,
                "staff": e.staff,
                "code": e.code,
                "detail": e.detail,
                "relatedDocId": e.related_doc_id,
            }
            for e in t.events
        ],
    }
    if args.json:
        print(json.dumps(data, ensure_ascii=False, indent=2))
    else:
        print_trace(out, data)
    return 0


def cmd_overdue(args: argparse.Namespace) -> int:
    """Recipients that did not confirm receipt (01/03) by the end of the working day of delivery."""
    from gateway.axis import OVERDUE_DAYS, overdue_report
    from lienthong_client.render import print_overdue

    config = _config(args)
    tz = ZoneInfo(config.timezone)
    now = _now()
    end = dt.datetime.combine(args.to_date + dt.timedelta(days=1), dt.time(), tz) if args.to_date else now
    start = (
        dt.datetime.combine(args.from_date, dt.time(), tz)
        if args.from_date
        else end - dt.timedelta(days=OVERDUE_DAYS)
    )
    if start >= end:
        raise errors.UsageError("--from must be before --to")
    db = _db(config)
    with db.unit_of_work() as session:
        items = overdue_report(
            session, [args.sender] if args.sender else None, start, end, now, limit=args.limit
        )
    rows = [
        {
            "docId": i.doc_id,
            "documentId": i.document_id,
            "subject": i.subject,
            "from": i.sender,
            "recipient": i.recipient,
            "acceptedAt": _iso(i.accepted_at),
            "deliveredAt": _iso(i.delivered_at),
            "dueAt": _iso(i.due_at),
            "answeredAt": _iso(i.answered_at),
            "businessStatus": i.business_status,
        }
        for i in items
    ]
    if args.json:
        print(json.dumps(rows, ensure_ascii=False, indent=2))
    else:
        print_overdue(out, rows)
    return 0


def _document_signer(config: Config):  # type: ignore[no-untyped-def]
    from gateway.keystore import load_document_signer

    signer = load_document_signer(config)
    if signer is None:
        raise errors.UsageError("the gateway has no key (gateway_key / gateway_cert); run `lienthong init`")
    return signer


def cmd_audit_seal(args: argparse.Namespace) -> int:
    """Sign a checkpoint of the audit chain's head now."""
    from gateway import evidence

    config = _config(args)
    signer = _document_signer(config)
    db = _db(config)
    with db.unit_of_work(write=True) as session:
        made = evidence.make_checkpoint(session, signer, _now())
        made = (made.seq, made.hash) if made is not None else None
        session.commit()
        seq, _hash = evidence.head(session)
    if made is None:
        out.print(
            f"the chain head (entry {seq}) is already checkpointed" if seq else "the audit chain is empty"
        )
    else:
        out.print(f"checkpoint signed at entry {made[0]}: {made[1]}")
    return 0


def cmd_audit_verify(args: argparse.Namespace) -> int:
    """Recompute the chain and check every checkpoint; exit 1 at the first broken entry."""
    import time

    from gateway import evidence
    from gateway.keystore import key_paths

    config = _config(args)
    # the certificate is enough (an auditor has no private key); earlier ones after a key change
    fingerprints = {fingerprint_of_file(str(key_paths(config)[1]))}
    for extra in args.gateway_cert or []:
        fingerprints.add(fingerprint_of_file(extra))
    db = _db(config)
    started = time.perf_counter()
    with db.unit_of_work() as session:
        report = evidence.verify_database(session, fingerprints, start=args.start)
    seconds = time.perf_counter() - started
    rate = report.entries / seconds if seconds > 0 else 0.0
    if args.json:
        print(
            json.dumps(
                {
                    "ok": report.ok,
                    "entries": report.entries,
                    "checkpoints": report.checkpoints,
                    "lastSeq": report.last_seq,
                    "firstBreak": {"seq": report.first_break.seq, "reason": report.first_break.reason}
                    if report.first_break
                    else None,
                    "problems": report.problems,
                    "seconds": round(seconds, 3),
                    "entriesPerSecond": round(rate),
                }
            )
        )
    else:
        for problem in report.problems:
            err.print(f"[red]{escape(problem)}[/red]")
        if report.first_break is not None:
            err.print(
                f"[red]broken at entry {report.first_break.seq}:[/red] {escape(report.first_break.reason)}"
            )
        out.print(
            f"{report.entries:,} entries checked up to entry {report.last_seq}, {report.checkpoints} signed "
            f"checkpoints, in {seconds:.2f} s ({rate:,.0f} entries/s): "
            + ("[green]the chain is intact[/green]" if report.ok else "[red]the chain is NOT intact[/red]")
        )
    return 0 if report.ok else 1


def fingerprint_of_file(path: str) -> str:
    from gateway.core.trust import fingerprint_sha256

    return fingerprint_sha256(_read_certificate(path))


def cmd_evidence_export(args: argparse.Namespace) -> int:
    from gateway import evidence

    config = _config(args)
    signer = _document_signer(config)
    db = _db(config)
    with db.unit_of_work(write=True) as session:
        try:
            data = evidence.export_bundle(session, signer, args.doc_id.strip(), _now())
        except LookupError:
            raise errors.UsageError(f"no packet has docId {args.doc_id!r}") from None
        session.commit()
    Path(args.output).write_bytes(data)
    out.print(f"evidence bundle for {args.doc_id}: {args.output} ({len(data):,} bytes)")
    return 0


def cmd_evidence_verify(args: argparse.Namespace) -> int:
    from gateway.bundle import print_report, verify_bundle

    anchors = [Path(t).read_bytes() for t in args.trust or []]
    seal_anchors = [Path(t).read_bytes() for t in args.seal_trust or []]
    report = verify_bundle(Path(args.file).read_bytes(), anchors, seal_anchors)
    if args.json:
        print(json.dumps(report.as_json(), ensure_ascii=False, indent=2))
    else:
        print_report(out, report)
    return 0 if report.ok else 1


def cmd_demo(args: argparse.Namespace) -> int:
    from gateway.demo import run_demo

    return run_demo(out, keep=args.keep, workers=args.workers)


def cmd_wsdl(args: argparse.Namespace) -> int:
    from gateway.soap.app import generate_wsdl

    data = generate_wsdl(args.address)
    if args.output:
        Path(args.output).write_bytes(data)
    else:
        sys.stdout.buffer.write(data)
    return 0


# --- parser ---------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lienthong", description="Operate a lienthong national document axis.")
    p.add_argument("--data-dir", help="data directory (default: $LIENTHONG_HOME or ./lienthong-data)")
    p.add_argument(
        "--database-url",
        help="SQLAlchemy URL (default: $LIENTHONG_DATABASE_URL or SQLite in the data directory)",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("init", help="create the data directory and the database")
    s.set_defaults(func=cmd_init)

    db = sub.add_parser("db", help="database schema").add_subparsers(dest="db_command", required=True)
    s = db.add_parser("upgrade", help="create or upgrade the schema (Alembic)")
    s.add_argument("revision", nargs="?", default="head")
    s.set_defaults(func=cmd_db_upgrade)

    agency = sub.add_parser("agency", help="the directory of agencies").add_subparsers(
        dest="agency_command", required=True
    )
    s = agency.add_parser("add", help="register an agency (or update a known code)")
    s.add_argument("code", metavar="CODE")
    s.add_argument("--name", required=True)
    s.add_argument("--parent", metavar="CODE")
    s.add_argument("--email")
    s.add_argument("--old-code", metavar="CODE", help="the code this agency had before (mergers)")
    s.set_defaults(func=cmd_agency_add)
    s = agency.add_parser("list", help="list agencies")
    s.add_argument("filter", nargs="?", help="part of a code or name")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_agency_list)
    s = agency.add_parser("set", help="an agency's seal policy")
    s.add_argument("code", metavar="CODE")
    s.add_argument(
        "--require-signature",
        type=_on_off,
        metavar="on|off",
        help="refuse unsigned packets from this agency (on by default)",
    )
    s.add_argument(
        "--allow-sha1",
        type=_on_off,
        metavar="on|off",
        help="accept legacy RSA-SHA1/SHA-1 seals from this agency (off by default)",
    )
    s.set_defaults(func=cmd_agency_set)
    cert = agency.add_parser("cert", help="an agency's seal certificates").add_subparsers(
        dest="cert_command", required=True
    )
    s = cert.add_parser("add", help="register a seal certificate for an agency")
    s.add_argument("code", metavar="CODE")
    s.add_argument("cert", metavar="CERT.pem")
    s.set_defaults(func=cmd_agency_cert_add)
    s = agency.add_parser("disable", help="stop deliveries to an agency (it stays in the directory)")
    s.add_argument("code", metavar="CODE")
    s.set_defaults(func=cmd_agency_disable)

    system = sub.add_parser("system", help="connected systems").add_subparsers(
        dest="system_command", required=True
    )
    s = system.add_parser("add", help="register a connected system and the agencies it acts for")
    s.add_argument("system_id", metavar="SYSTEM_ID")
    s.add_argument(
        "--agency",
        action="append",
        required=True,
        metavar="CODE",
        help="an agency it may act for (repeat for several)",
    )
    s.add_argument("--cert", action="append", metavar="CERT.pem", help="a certificate it signs requests with")
    s.add_argument(
        "--auth",
        choices=["x509", "username-token"],
        help="x509: signed requests (the default with --cert); username-token: for stacks that cannot sign",
    )
    g = s.add_mutually_exclusive_group()
    g.add_argument(
        "--secret-file", metavar="F", help="file holding its secret (at least 32 random characters)"
    )
    g.add_argument("--generate-secret", action="store_true", help="generate a secret and print it once")
    s.add_argument(
        "--admin", action="store_true", help="may change the directory (registerAgency, deleteAgency)"
    )
    s.set_defaults(func=cmd_system_add)
    scert = system.add_parser("cert", help="a system's request-signing certificates").add_subparsers(
        dest="system_cert_command", required=True
    )
    s = scert.add_parser("add", help="register another certificate for a system (renewal)")
    s.add_argument("system_id", metavar="SYSTEM_ID")
    s.add_argument("cert", metavar="CERT.pem")
    s.set_defaults(func=cmd_system_cert_add)
    s = system.add_parser("list", help="list connected systems")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_system_list)

    s = sub.add_parser("serve", help="serve the gateway with gunicorn")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8080)
    s.add_argument("--workers", type=int, default=2, metavar="N", help="worker processes (default 2)")
    s.add_argument("--threads", type=int, default=4, metavar="N", help="threads per worker (default 4)")
    s.add_argument("--access-log", action="store_true", help="log every HTTP request")
    s.add_argument(
        "--pin-workers",
        action="store_true",
        help="keep each worker on a CPU of its own: faster with SQLite or a database on another machine, "
        "slower with PostgreSQL on the same CPUs",
    )
    s.add_argument("--tls-cert", metavar="F", help="serve HTTPS with this certificate (PEM)")
    s.add_argument("--tls-key", metavar="F", help="the TLS certificate's private key (PEM)")
    s.add_argument(
        "--client-ca", metavar="F", help="require client certificates issued by this CA (mutual TLS)"
    )
    s.add_argument("--fd", type=int, help=argparse.SUPPRESS)  # an already bound socket, from a parent
    s.set_defaults(func=cmd_serve)

    crl = sub.add_parser("crl", help="certificate revocation lists").add_subparsers(
        dest="crl_command", required=True
    )
    s = crl.add_parser("add", help="load a CRL (PEM or DER); running gateways pick it up")
    s.add_argument("file", metavar="FILE")
    s.set_defaults(func=cmd_crl_add)

    s = sub.add_parser("pki", help="make a TEST CA and agency seal certificates (never for production)")
    s.add_argument("--out", required=True, metavar="DIR")
    s.add_argument(
        "--agency", action="append", metavar="CODE=NAME", help="an agency (repeat); default: G22, H41, H49"
    )
    s.add_argument("--key-type", choices=["rsa", "ec"], default="rsa", help="RSA 2048 or ECDSA P-256")
    s.set_defaults(func=cmd_pki)

    s = sub.add_parser("verify", help="check packets' seals offline (exit 1 if any is invalid)")
    s.add_argument("files", nargs="+", metavar="FILE")
    s.add_argument("--trust", metavar="CA.pem", help="trust anchors (default: the configured ones)")
    s.add_argument("--crl", action="append", metavar="FILE", help="a CRL to check against (repeat)")
    s.add_argument("--allow-sha1", action="store_true", help="accept legacy RSA-SHA1 seals")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_verify)

    s = sub.add_parser("trace", help="the life of one packet: every recipient's state and every event")
    s.add_argument("doc_id", metavar="DOCID")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_trace)

    s = sub.add_parser("overdue", help="recipients that missed the same-day rule (01/03 by end of day)")
    s.add_argument(
        "--from",
        dest="from_date",
        type=dt.date.fromisoformat,
        metavar="YYYY-MM-DD",
        help="documents accepted from this day (default: the last 30 days)",
    )
    s.add_argument("--to", dest="to_date", type=dt.date.fromisoformat, metavar="YYYY-MM-DD")
    s.add_argument("--sender", metavar="AGENCY", help="only documents of this agency")
    s.add_argument("--limit", type=int, default=10000)
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_overdue)

    audit_cmd = sub.add_parser("audit", help="the audit hash chain").add_subparsers(
        dest="audit_command", required=True, metavar="COMMAND"
    )
    s = audit_cmd.add_parser("seal", help="sign a checkpoint of the chain head now")
    s.set_defaults(func=cmd_audit_seal)
    s = audit_cmd.add_parser(
        "verify", help="recompute the chain and check every checkpoint (exit 1 if broken)"
    )
    s.add_argument(
        "--from",
        dest="start",
        type=int,
        default=0,
        metavar="N",
        help="start after entry N (from the newest signed checkpoint at or before it)",
    )
    s.add_argument(
        "--gateway-cert",
        action="append",
        metavar="PEM",
        help="an earlier gateway certificate whose checkpoints are also accepted (key rollover)",
    )
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_audit_verify)

    evidence_cmd = sub.add_parser("evidence", help="evidence bundles for auditors").add_subparsers(
        dest="evidence_command", required=True, metavar="COMMAND"
    )
    s = evidence_cmd.add_parser("export", help="write the evidence bundle of one packet")
    s.add_argument("doc_id", metavar="DOCID")
    s.add_argument("-o", "--output", required=True, metavar="FILE.zip")
    s.set_defaults(func=cmd_evidence_export)
    s = evidence_cmd.add_parser("verify", help="check a bundle offline: no database, no network")
    s.add_argument("file", metavar="FILE.zip")
    s.add_argument(
        "--trust",
        action="append",
        required=True,
        metavar="PEM",
        help="the gateway's certificate (compare its SHA-256 with the one the operator publishes); repeat "
        "for an earlier one after a key change",
    )
    s.add_argument(
        "--seal-trust",
        action="append",
        metavar="PEM",
        help="a CA of the agencies' seal certificates, to check the seals' chains (repeatable)",
    )
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_evidence_verify)

    s = sub.add_parser("demo", help="run the whole exchange on a temporary gateway and show the result")
    s.add_argument("--keep", action="store_true", help="keep the temporary directory and print its path")
    s.add_argument("--workers", type=int, default=2)
    s.set_defaults(func=cmd_demo)

    s = sub.add_parser("wsdl", help="print the WSDL the service publishes")
    s.add_argument("-o", "--output", metavar="FILE")
    s.add_argument("--address", default="http://localhost:8080/", help="the endpoint address to write in it")
    s.set_defaults(func=cmd_wsdl)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except errors.ConfigError as exc:
        err.print(
            "[red]configuration problems:[/red]\n  " + escape("\n  ".join(exc.problems)), highlight=False
        )
        return 1
    except errors.LienthongError as exc:
        err.print(f"[red]error:[/red] {escape(exc.message)}", highlight=False)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
