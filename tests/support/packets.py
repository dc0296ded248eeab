"""Fresh packets for tests: every call gives a new DocumentId, so tests never collide."""

from __future__ import annotations

import itertools
import os

from lxml import etree

from lienthong_client.packets import build_document, build_status, read_header

_numbers = itertools.count(1)


def new_document(sender: str, recipients: list[str], subject: str = "Công văn thử nghiệm", **kw) -> bytes:
    number = f"{os.getpid() % 1000}{next(_numbers):05d}"
    return build_document(
        sender=sender, recipients=recipients, number=number, notation="TEST", subject=subject, **kw
    )


def status_for(document: bytes, sender: str, code: str, description: str | None = None) -> bytes:
    header = read_header(document)
    return build_status(
        sender=sender,
        original_sender=header["from"],
        original_document_id=header["document_id"],
        original_code=header["code"],
        status_code=code,
        description=description,
        staff="Văn thư",
    )


def successor(
    document: bytes,
    kind: int,
    recipients: list[str] | None = None,
    reason: str = "Sai sót nội dung",
    *,
    same_document_id: bool = False,
    **kw,
) -> bytes:
    """A recall (1), update (2) or replace (3) of ``document``, by the same sender. With
    ``same_document_id`` the new packet keeps the earlier DocumentId (updates often do)."""
    header = read_header(document)
    sender = header["from"]
    if recipients is None:
        recipients = [
            el.text
            for el in etree.fromstring(document).iter("{http://www.mic.gov.vn/TBT/QCVN_102_2016}OrganId")
            if el.getparent().tag.endswith("}To")
        ]
    number = f"{os.getpid() % 1000}{next(_numbers):05d}"
    if same_document_id:
        number, notation = header["code"].split("/", 1)
    else:
        notation = "TEST"
    return build_document(
        sender=sender,
        recipients=recipients,
        number=number,
        notation=notation,
        subject=f"{['', 'Thu hồi', 'Cập nhật', 'Thay thế'][kind]}: văn bản {header['document_id']}",
        business_doc_type=kind,
        refers_to=header["document_id"],
        reason=reason,
        **kw,
    )
