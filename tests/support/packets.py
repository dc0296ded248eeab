"""Fresh packets for tests: every call gives a new DocumentId, so tests never collide."""

from __future__ import annotations

import itertools
import os

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
