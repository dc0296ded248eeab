"""Checking an evidence bundle offline: no database, no network, nothing but the zip and the certificates
the auditor trusts (``lienthong evidence verify FILE.zip --trust CA.pem``).

What is checked, each failure reported by name:

1. the manifest is signed by the gateway's key (its certificate one the auditor trusts, or issued by one);
2. the files are exactly those the manifest lists, each with its SHA-256 (a file added, removed or changed
   is found);
3. every receipt is signed by that same gateway key and names the packet's exact digest (a status receipt:
   the status packet's);
4. the packet's seal (and each status packet's) verifies, and chains to a trusted CA if one is given;
5. the audit entries chain, through the digests of the entries in between, from the starting point (the
   chain's beginning or a signed checkpoint) to a signed checkpoint, and each receipt's audit entry is
   among them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import zipfile
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from rich.console import Console
from rich.markup import escape

from gateway import errors
from gateway.core import evidence as ev
from gateway.core.seal import SealPolicy, verify_document, verify_seal
from gateway.core.trust import TrustStore
from gateway.core.xmlparse import parse_xml

MAX_FILES = 10_000
MAX_TOTAL = 512 * 1024**2
#: a file that inflates more than this is refused (a zip bomb)
MAX_RATIO = 200


@dataclasses.dataclass
class BundleReport:
    doc_id: str = ""
    problems: list[str] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)
    gateway_fingerprint: str | None = None
    gateway_anchored: bool = False
    submission: dict[str, Any] | None = None
    deliveries: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    acknowledgements: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    statuses: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    audit_entries: int = 0
    checkpoint: int | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_json(self) -> dict[str, Any]:
        return {"ok": self.ok, **dataclasses.asdict(self)}


def _fingerprint(cert: x509.Certificate) -> str:
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def _ca_store(anchors: list[x509.Certificate]) -> TrustStore:
    usable = []
    for anchor in anchors:
        try:
            TrustStore.from_pem(anchor.public_bytes(serialization.Encoding.PEM))
            usable.append(anchor)
        except ValueError:
            continue  # not a CA (e.g. the gateway's own certificate): no use for seals
    return TrustStore(anchors=tuple(usable))


def _read_zip(data: bytes, report: BundleReport) -> dict[str, bytes] | None:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        report.problems.append(f"not a zip file: {exc}")
        return None
    infos = archive.infolist()
    if len(infos) > MAX_FILES or sum(i.file_size for i in infos) > MAX_TOTAL:
        report.problems.append("the bundle is too large to be an evidence bundle")
        return None
    if any(i.file_size > MAX_RATIO * max(i.compress_size, 1024) for i in infos):
        report.problems.append("a file of the bundle inflates far beyond its compressed size (a zip bomb?)")
        return None
    files: dict[str, bytes] = {}
    for info in infos:
        name = info.filename
        if info.is_dir():
            continue
        if name.startswith("/") or ".." in name.split("/") or "\\" in name:
            report.problems.append(f"unsafe file name in the bundle: {name!r}")
            continue
        if name in files:
            report.problems.append(f"{name} appears twice in the bundle")
            continue
        files[name] = archive.read(info)
    return files


def verify_bundle(data: bytes, anchors_pem: list[bytes], seal_anchors_pem: list[bytes] = ()) -> BundleReport:
    """``anchors_pem``: the gateway's certificates the auditor trusts, pinned exactly (the current one and
    any earlier one, after a key change); ``seal_anchors_pem``: the CAs of the agencies' seal certificates.
    Kept apart, so that no agency key can pass for the gateway's. Any malformed content is a failure in
    the report, never an exception."""
    report = BundleReport()
    try:
        _verify(data, anchors_pem, seal_anchors_pem, report)
    except Exception as exc:  # noqa: BLE001 - hostile input: every failure is a finding
        report.problems.append(f"the bundle is malformed: {type(exc).__name__}: {str(exc)[:200]}")
    return report


def _verify(
    data: bytes, anchors_pem: list[bytes], seal_anchors_pem: list[bytes], report: BundleReport
) -> None:
    anchors: list[x509.Certificate] = []
    for pem in anchors_pem:
        anchors += x509.load_pem_x509_certificates(pem)
    trusted = {_fingerprint(c) for c in anchors}
    seal_anchors: list[x509.Certificate] = []
    for pem in seal_anchors_pem:
        seal_anchors += x509.load_pem_x509_certificates(pem)
    if not trusted:
        report.problems.append(
            "no gateway certificate to trust: give --trust with the gateway's certificate (its SHA-256 is "
            "published by the operator); without it anyone could have signed this bundle"
        )
    files = _read_zip(data, report)
    if files is None:
        return

    # 1. the manifest
    manifest_bytes = files.pop("manifest.xml", None)
    if manifest_bytes is None:
        report.problems.append("manifest.xml is missing: nothing in the bundle can be trusted")
        return
    try:
        manifest = verify_document(manifest_bytes)
        report.doc_id, listed = ev.read_manifest(manifest.root)
    except (errors.LienthongError, ValueError) as exc:
        report.problems.append(f"manifest.xml: the gateway's signature does not verify ({_why(exc)})")
        return
    gateway = manifest.signer
    report.gateway_fingerprint = manifest.fingerprint
    report.gateway_anchored = manifest.fingerprint in trusted
    if not report.gateway_anchored:
        if trusted:
            report.problems.append(
                f"the bundle is signed by a gateway certificate you did not trust "
                f"(SHA-256 {manifest.fingerprint}, {gateway.subject.rfc4514_string()})"
            )
        return  # nothing else in it can be believed

    # 2. the files, exactly
    for name in sorted(set(files) - set(listed)):
        report.problems.append(f"{name} was added to the bundle (the manifest does not list it)")
    for name in sorted(set(listed) - set(files)):
        report.problems.append(f"{name} was removed from the bundle (the manifest lists it)")
    for name in sorted(set(listed) & set(files)):
        if hashlib.sha256(files[name]).hexdigest() != listed[name]:
            report.problems.append(f"{name} was changed after the bundle was made (SHA-256 differs)")
    if (
        files.get("certs/gateway.pem")
        and x509.load_pem_x509_certificate(files["certs/gateway.pem"]) != gateway
    ):
        report.problems.append("certs/gateway.pem is not the certificate that signed the manifest")

    packet = files.get("packet.edxml")
    if packet is None:
        report.problems.append("packet.edxml is missing")
        return
    packet_sha256 = hashlib.sha256(packet).hexdigest()

    # 3. receipts
    receipts: list[ev.ReceiptFacts] = []
    for name in sorted(n for n in files if n.startswith("receipts/")):
        try:
            doc = verify_document(files[name])
            facts = ev.read_receipt(doc.root)
        except (errors.LienthongError, ValueError) as exc:
            report.problems.append(f"{name}: not a valid receipt ({_why(exc)})")
            continue
        if doc.fingerprint not in trusted:
            report.problems.append(
                f"{name} is signed by another key than the gateway's (SHA-256 {doc.fingerprint[:16]}…)"
            )
            continue
        if facts.doc_id != report.doc_id:
            report.problems.append(f"{name} is about another packet ({facts.doc_id})")
            continue
        if facts.packet_sha256 != packet_sha256:
            report.problems.append(f"{name}: its digest does not match the packet's bytes")
            continue
        if facts.kind == "status":
            status = files.get(f"statuses/{facts.status_doc_id}.edxml")
            if status is None or hashlib.sha256(status).hexdigest() != facts.status_sha256:
                report.problems.append(f"{name}: the status packet it names is missing or differs")
                continue
        receipts.append(facts)
    submissions = [r for r in receipts if r.kind == "submission"]
    if not submissions:
        report.problems.append("no valid submission receipt for the packet")

    # 4. seals
    store = _ca_store(seal_anchors)
    at = submissions[0].at if submissions else manifest_time(manifest.root)
    for name in ["packet.edxml", *sorted(n for n in files if n.startswith("statuses/"))]:
        _check_seal(name, files[name], store, at, report)

    # 5. the audit chain
    status_ids = {n[len("statuses/") : -len(".edxml")] for n in files if n.startswith("statuses/")}
    _check_audit(files, trusted, receipts, report, {report.doc_id, *status_ids})

    # what happened, for people
    if submissions:
        s = submissions[0]
        report.submission = {
            "docId": s.doc_id,
            "sender": s.sender,
            "system": s.sender_system,
            "recipients": list(s.recipients),
            "sha256": s.packet_sha256,
            "signer": s.signer_subject,
            "at": ev.iso(s.at),
        }
    for r in receipts:
        if r.kind == "delivery":
            report.acknowledgements.append(
                {"recipient": r.recipients[0], "at": ev.iso(r.at), "system": r.by_system}
            )
        elif r.kind == "status":
            report.statuses.append(
                {
                    "from": r.recipients[0] if r.recipients else r.sender,
                    "code": r.status_code,
                    "at": ev.iso(r.at),
                    "statusDocId": r.status_doc_id,
                }
            )


def manifest_time(root: Any) -> Any:
    return ev.parse_iso(root.findtext(f"{{{ev.EVIDENCE_NS}}}Time") or "")


def _why(exc: BaseException) -> str:
    return exc.message if isinstance(exc, errors.LienthongError) else str(exc)


def _check_seal(name: str, data: bytes, store: TrustStore, at: Any, report: BundleReport) -> None:
    try:
        tree = parse_xml(data, max_bytes=len(data) + 1)
    except errors.LienthongError as exc:
        report.problems.append(f"{name}: {_why(exc)}")
        return
    from gateway.core.seal import is_sealed

    if not is_sealed(tree):
        report.notes.append(f"{name} carries no seal (its agency was allowed to send unsigned packets)")
        return
    try:
        seal = verify_seal(tree, policy=SealPolicy(allow_sha1=True), trust=store, at=at)
        report.notes.append(f"{name}: seal of {seal.subject} verifies and chains to a trusted CA")
    except (errors.CertificateUntrusted, errors.CertificateSelfSigned):
        report.notes.append(f"{name}: the seal verifies, but no --seal-trust CA issued its certificate")
    except errors.SealError as exc:
        report.problems.append(f"{name}: the seal does not verify ({_why(exc)})")


def _check_audit(
    files: dict[str, bytes],
    trusted: set[str],
    receipts: list[ev.ReceiptFacts],
    report: BundleReport,
    concerned: set[str],
) -> None:
    lines = files.get("audit/entries.jsonl")
    end_doc = files.get("audit/checkpoint-end.xml")
    if lines is None or end_doc is None:
        report.problems.append("the audit entries or their closing checkpoint are missing")
        return
    checkpoints = {}
    for name in ("audit/checkpoint-start.xml", "audit/checkpoint-end.xml"):
        if name not in files:
            continue
        try:
            doc = verify_document(files[name])
            if doc.fingerprint not in trusted:
                raise ValueError("signed by another key than the gateway's")
            checkpoints[name] = ev.read_checkpoint(doc.root)
        except (errors.LienthongError, ValueError) as exc:
            report.problems.append(f"{name}: the checkpoint signature does not verify ({_why(exc)})")
            return
    start = checkpoints.get("audit/checkpoint-start.xml")
    start_seq, start_hash = (start.seq, start.chain_hash) if start else (0, ev.GENESIS)
    end = checkpoints["audit/checkpoint-end.xml"]
    end_seq, end_hash = end.seq, end.chain_hash
    current, expected = start_hash, start_seq + 1
    contents: dict[int, dict[str, Any]] = {}
    try:
        for line in lines.decode("utf-8").split("\n"):
            if not line.strip():
                continue
            item = json.loads(line)
            if item["seq"] != expected:
                report.problems.append(
                    f"audit entry {expected} is missing from the proof (found {item['seq']})"
                )
                return
            if "content" in item:
                content = item["content"].encode("utf-8")
                entry = json.loads(content)
                if entry.get("seq") != item["seq"]:
                    report.problems.append(f"audit entry {item['seq']} carries another sequence number")
                    return
                if entry.get("docId") not in concerned:
                    report.problems.append(
                        f"audit entry {item['seq']} is about another packet ({entry.get('docId')})"
                    )
                    return
                contents[item["seq"]] = entry
                digest = ev.content_digest(content)
            else:
                digest = bytes.fromhex(item["digest"])
            current = ev.chain(current, digest)
            expected += 1
    except (ValueError, KeyError) as exc:
        report.problems.append(f"audit/entries.jsonl is not a chain proof ({exc})")
        return
    if expected - 1 != end_seq or current != end_hash:
        report.problems.append(
            f"the audit entries do not lead to the signed checkpoint at entry {end_seq}: an entry was changed, "
            f"added, removed or reordered"
        )
        return
    report.audit_entries = len(contents)
    report.checkpoint = end_seq
    recorded = {rid for entry in contents.values() for rid in entry.get("receipts") or []}
    for r in receipts:
        if r.receipt_id not in recorded:
            report.problems.append(
                f"no audit entry in the bundle records the {r.kind} receipt {r.receipt_id}"
            )
    for entry in contents.values():
        if entry.get("event") == "delivered" and entry.get("docId") == report.doc_id:
            report.deliveries.append(
                {"recipient": entry.get("recipient"), "at": entry.get("at"), "system": entry.get("system")}
            )


def print_report(console: Console, report: BundleReport) -> None:
    console.print(f"[bold]evidence bundle for packet {escape(report.doc_id or '?')}[/bold]")
    if report.gateway_fingerprint:
        anchored = "trusted" if report.gateway_anchored else "NOT anchored"
        console.print(f"  signed by the gateway key SHA-256 {report.gateway_fingerprint} ({anchored})")
    s = report.submission
    if s:
        console.print(
            f"  {s['at']}: {s['sender']} (system {s['system']}) sent it to {', '.join(s['recipients'])}; "
            f"the gateway accepted it; SHA-256 {s['sha256']}; sealed by {s['signer'] or 'no seal'}"
        )
    for d in sorted(report.deliveries, key=lambda x: x["at"] or ""):
        console.print(f"  {d['at']}: {d['recipient']} fetched it (system {d['system']})")
    for a in sorted(report.acknowledgements, key=lambda x: x["at"]):
        console.print(f"  {a['at']}: {a['recipient']} acknowledged it as stored (system {a['system']})")
    for st in sorted(report.statuses, key=lambda x: x["at"]):
        console.print(f"  {st['at']}: {st['from']} sent status {st['code']} ({st['statusDocId']})")
    if report.checkpoint is not None:
        console.print(
            f"  {report.audit_entries} audit entries chain to the signed checkpoint at entry {report.checkpoint}"
        )
    for note in report.notes:
        console.print(f"  [yellow]note:[/yellow] {escape(note)}")
    for problem in report.problems:
        console.print(f"  [red]FAILED:[/red] {escape(problem)}")
    console.print(
        "[green]the bundle verifies[/green]" if report.ok else "[red]the bundle does NOT verify[/red]"
    )
