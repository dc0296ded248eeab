"""Loading the trust anchors and CRLs the gateway checks seals against (the edge of gateway.core.trust).

The anchors come from the configured PEM bundle; CRLs from every ``*.pem``/``*.crl``/``*.der`` file in the
data directory's ``crls/`` (``lienthong crl add`` copies them there). Both are re-read when a file changes,
so a new CRL takes effect without a restart; the check is one ``stat`` per request.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from gateway.core.trust import TrustStore

log = logging.getLogger("lienthong.trust")
CRL_SUFFIXES = (".pem", ".crl", ".der")


class TrustSource:
    def __init__(self, anchors: Path | None, crl_dir: Path | None) -> None:
        self.anchors = anchors
        self.crl_dir = crl_dir
        self._lock = threading.Lock()
        self._stamp: tuple | None = None
        self._store = TrustStore(anchors=())

    def _files(self) -> list[Path]:
        files = [self.anchors] if self.anchors else []
        if self.crl_dir and self.crl_dir.is_dir():
            files += sorted(p for p in self.crl_dir.iterdir() if p.suffix.lower() in CRL_SUFFIXES)
        return files

    def _stamp_now(self) -> tuple:
        out = []
        for path in self._files():
            try:
                st = path.stat()
            except OSError:
                continue
            out.append((str(path), st.st_mtime_ns, st.st_size))
        if self.crl_dir is not None:
            try:
                out.append(("dir", self.crl_dir.stat().st_mtime_ns, 0))
            except OSError:
                pass
        return tuple(out)

    def current(self) -> TrustStore:
        stamp = self._stamp_now()
        if stamp != self._stamp:
            with self._lock:
                if stamp != self._stamp:
                    self._store = self._load()
                    self._stamp = stamp
        return self._store

    def _load(self) -> TrustStore:
        anchors = self.anchors.read_bytes() if self.anchors and self.anchors.is_file() else b""
        crls = []
        if self.crl_dir and self.crl_dir.is_dir():
            crls = [
                p.read_bytes() for p in sorted(self.crl_dir.iterdir()) if p.suffix.lower() in CRL_SUFFIXES
            ]
        store = TrustStore.from_pem(anchors, crls) if anchors else TrustStore(anchors=())
        log.info("trust: %d anchors, %d CRLs", len(store.anchors), len(store.crls))
        return store
