"""The app factory: config in, a guarded WSGI application out (``create_app``)."""

from __future__ import annotations

import binascii
import datetime as dt
import logging
import math
from typing import Any, ClassVar

from lxml import etree
from spyne import Application, Boolean, DateTime, Integer, Unicode
from spyne import const as spyne_const
from spyne.error import ValidationError
from spyne.model import binary as spyne_binary
from spyne.protocol.soap import Soap11
from spyne.server.wsgi import WsgiApplication

from gateway.axis import Axis, EvidenceSettings, SealSettings
from gateway.config import Config
from gateway.core.seal import SealPolicy
from gateway.core.wssec import TimestampPolicy
from gateway.keystore import load_document_signer, load_signer
from gateway.resources import load_schemas, wsdl_path
from gateway.soap.direct import DirectOperations
from gateway.soap.faults import TNS, LienthongFault, fault_element, from_spyne, new_correlation_id
from gateway.soap.guard import ENV_CORRELATION, ENV_TREE, Guard
from gateway.soap.service import LienthongService
from gateway.store.db import Database
from gateway.trustsource import TrustSource

SERVICE_NAME = "LienthongAxis"
#: the address written into the checked-in WSDL; the served WSDL carries the address it was asked at
WSDL_PLACEHOLDER_ADDRESS = "http://localhost:8080/"


class GuardedSoap11(Soap11):
    """SOAP 1.1 that reads the tree the guard already parsed and checked, and puts a correlation id on
    every fault, spyne's own ones (e.g. ``Client.ValidationError``) included."""

    def create_in_document(self, ctx: Any, charset: str | None = None) -> None:
        tree = ctx.transport.req_env.get(ENV_TREE)
        if tree is None:  # only the guard may hand requests to spyne
            raise LienthongFault("Server.Internal", "the request bypassed the guard", "-")
        # No xmlids: spyne resolves no href/id references (the guard refused them anyway).
        ctx.in_document = (tree.getroot(), {})

    def fault_to_parent(
        self, ctx: Any, cls: Any, inst: Any, parent: Any, ns: Any, *args: Any, **kw: Any
    ) -> Any:
        """Every fault in the one shape of :func:`gateway.soap.faults.fault_element`; spyne's own
        refusals (validation, unknown operation) get our codes and a correlation id too."""
        lienthong = getattr(inst, "lienthong", None)
        if lienthong is not None:
            code, message, cid = lienthong
        else:
            env = getattr(getattr(ctx, "transport", None), "req_env", None) or {}
            cid = env.get(ENV_CORRELATION) or new_correlation_id()
            code, message = from_spyne(inst.faultcode or "Server", inst.faultstring or "")
            logging.getLogger("lienthong.soap").warning(
                "refused by the SOAP layer: %s (spyne %s): %s [correlation id %s]",
                code,
                inst.faultcode,
                inst.faultstring,
                cid,
            )
        parent.append(fault_element(code, message, cid))

    def complex_to_parent(
        self,
        ctx: Any,
        cls: Any,
        inst: Any,
        parent: Any,
        ns: Any,
        name: Any = None,
        add_type: bool = False,
        **kw: Any,
    ) -> Any:
        """Flat records (every member a single string, date-time, boolean or integer: the entries of the
        lists) are written straight to the tree; spyne's generic path costs ~0.3 ms per entry, which is most
        of a 1000-entry list. The output is the same element for element (a test compares them)."""
        plan = self._flat_plan(cls)
        if plan is None or add_type or not isinstance(parent, etree._Element) or name is None:
            return super().complex_to_parent(ctx, cls, inst, parent, ns, name=name, add_type=add_type, **kw)
        element = etree.SubElement(parent, f"{{{ns}}}{name}" if ns else name)
        for attr, tag, member, kind in plan:
            value = getattr(inst, attr, None)
            if value is None:
                if member.Attributes.min_occurs > 0:  # spyne writes a nil element: let it
                    self.to_parent(ctx, member, None, element, cls.get_namespace(), tag.rsplit("}", 1)[-1])
                continue
            etree.SubElement(element, tag).text = self.flat_text(member, kind, value)
        return None

    def flat_text(self, member: Any, kind: type, value: Any) -> str:
        """The text of one member of a flat record (see :meth:`flat_plan`), as spyne writes it."""
        if kind is str and isinstance(value, str):
            return value
        if kind is bool:
            return "true" if value else "false"
        if kind is int:
            return str(int(value))
        if kind is _ISO and isinstance(value, dt.datetime):
            return value.isoformat()
        return self.to_unicode(member, value)

    def flat_plan(self, cls: Any) -> list[tuple[str, str, Any, type]] | None:
        """(attribute, element tag, spyne type, kind) of each member of ``cls`` if it is a flat record
        (every member a single string, date-time, boolean or integer), else None."""
        return self._flat_plan(cls)

    _flat_plans: ClassVar[dict[Any, Any]] = {}

    def _flat_plan(self, cls: Any) -> list[tuple[str, str, Any, type]] | None:
        if cls in self._flat_plans:
            return self._flat_plans[cls]
        plan: list[tuple[str, str, Any, type]] | None = []
        if getattr(cls, "__extends__", None) is not None or self.get_cls_attrs(cls).sub_name is not None:
            plan = None
        for attr, member in cls._type_info.items():
            if plan is None:
                break
            attrs = member.Attributes
            kind = next((t for base, t in _FLAT_KINDS if issubclass(member, base)), None)
            if kind is None or attrs.max_occurs != 1 or self.get_cls_attrs(member).exc:
                plan = None
                break
            if kind is dt.datetime and _plain_datetime(self.get_cls_attrs(member), self):
                kind = _ISO
            ns = attrs.sub_ns or cls.get_namespace()
            plan.append((attr, f"{{{ns}}}{attrs.sub_name or attr}", member, kind))
        self._flat_plans[cls] = plan
        return plan


_FLAT_KINDS = ((Boolean, bool), (Integer, int), (DateTime, dt.datetime), (Unicode, str))


class _ISO:
    """A date-time member spyne writes as ``value.isoformat()`` (no zone change, format or template)."""


def _plain_datetime(attrs: Any, protocol: Any) -> bool:
    return (
        attrs.as_timezone is None
        and attrs.timezone
        and protocol._get_datetime_format(attrs) is None
        and attrs.string_format is None
        and attrs.str_format is None
        and attrs.interp_format is None
    )


# spyne runs gc.collect() after a request at most once a second per process; a full collection takes
# ~90 ms and stops every thread of the worker (7-9 % of the time and most of the p99 tail in the
# benchmark). Python's own generational collector is enough.
spyne_const.MIN_GC_INTERVAL = math.inf


def _decode_base64(value: str | bytes) -> tuple[bytes]:
    """spyne decodes base64Binary with ``"".join(value)`` over the text — a list of one-character
    strings, ~535 MB for a 50 MB packet; binascii decodes the text as it is, in C."""
    try:
        return (binascii.a2b_base64(value),)
    except (binascii.Error, TypeError, ValueError):
        raise ValidationError(value[:64] if isinstance(value, (str, bytes)) else value) from None


spyne_binary.binary_decoding_handlers[spyne_binary.BINARY_ENCODING_BASE64] = _decode_base64


def build_application() -> Application:
    """The spyne application (also used offline to write ``wsdl/lienthong.wsdl``)."""
    return Application(
        [LienthongService],
        tns=TNS,
        name=SERVICE_NAME,
        in_protocol=GuardedSoap11(validator="soft"),
        out_protocol=GuardedSoap11(),
    )


def generate_wsdl(address: str = WSDL_PLACEHOLDER_ADDRESS) -> bytes:
    """The WSDL spyne derives from the service, indented for reading; ``wsdl/lienthong.wsdl`` is this with
    the placeholder address, and the guard serves that file with the address it is reached at."""
    from spyne.interface.wsdl import Wsdl11

    app = build_application()
    app.transport = "http://schemas.xmlsoap.org/soap/http"  # what WsgiApplication sets when serving

    wsdl = Wsdl11(app.interface)
    wsdl.build_interface_document(address)
    tree = etree.fromstring(wsdl.get_interface_document())
    _stable_order(tree)
    etree.indent(tree, space="  ")
    return etree.tostring(tree, xml_declaration=True, encoding="UTF-8", pretty_print=True)


def _stable_order(definitions: etree._Element) -> None:
    """spyne emits types and messages in hash order; sort them so the WSDL is the same on every run."""
    xs = "{http://www.w3.org/2001/XMLSchema}"
    wsdl = "{http://schemas.xmlsoap.org/wsdl/}"

    def by_name(parent: etree._Element, tags: tuple[str, ...]) -> None:
        movable = [c for c in parent if c.tag in tags]
        for child in movable:
            parent.remove(child)
        movable.sort(key=lambda c: (tags.index(c.tag), c.get("name", "")))
        anchor = len([c for c in parent if c.tag not in tags and c.tag != f"{wsdl}documentation"])
        for offset, child in enumerate(movable):
            parent.insert(anchor + offset if parent.tag == f"{xs}schema" else len(parent), child)

    for schema in definitions.iter(f"{xs}schema"):
        by_name(schema, (f"{xs}import", f"{xs}simpleType", f"{xs}complexType", f"{xs}element"))
    for section in (f"{wsdl}portType", f"{wsdl}binding"):
        for el in definitions.iter(section):
            by_name(el, (f"{wsdl}operation",))
    parts = {
        tag: [c for c in definitions if c.tag == tag]
        for tag in (f"{wsdl}types", f"{wsdl}message", f"{wsdl}service", f"{wsdl}portType", f"{wsdl}binding")
    }
    for children in parts.values():
        for child in children:
            definitions.remove(child)
    for tag, children in parts.items():
        for child in (
            sorted(children, key=lambda c: c.get("name", "")) if tag == f"{wsdl}message" else children
        ):
            definitions.append(child)


def operations(app: Application) -> dict[str, frozenset[str]]:
    """Each operation's element name and the element names of its parameters, as spyne defines them."""
    out = {}
    for name, methods in app.interface.service_method_map.items():
        message = methods[0].in_message
        ns = message.get_namespace()
        out[name] = frozenset(f"{{{ns}}}{param}" for param in message._type_info)
    return out


def seal_settings(config: Config) -> SealSettings:
    """The seal checks of this gateway, from its configuration."""
    source = TrustSource(config.trust_anchors, config.crl_dir)
    return SealSettings(
        trust=source.current,
        policy=SealPolicy(allow_sha1=config.allow_sha1),
        subject_attribute=config.seal_subject_attribute,
    )


def create_app(config: Config, *, db: Database | None = None) -> Guard:
    """The WSGI application of one gateway process."""
    # each request computing holds at most one pooled connection at a time (a packet's checks keep the one
    # that read its credentials): as many as the slots, and the pool's default beyond
    database = db or Database(config.database_url, pool_size=max(5, config.compute_slots))
    axis = Axis(
        database,
        load_schemas(config.schema_dir),
        max_packet_bytes=config.max_packet_bytes,
        timezone=config.timezone,
        calendar=config.calendar,
        seals=seal_settings(config),
        evidence=EvidenceSettings(
            signer=load_document_signer(config),
            enabled=config.evidence,
            checkpoint_every=config.checkpoint_every,
        ),
        replay_margin=dt.timedelta(seconds=config.clock_skew),
        flush_fetch_marks=config.flush_fetch_marks,
    )
    app = build_application()
    app.lienthong_axis = axis  # read by the service methods through ctx.app
    wsgi = WsgiApplication(app, max_content_length=config.max_request_bytes + 1)
    guard = Guard(
        wsgi,
        max_request_bytes=config.max_request_bytes,
        operations=operations(app),
        wsdl=wsdl_path().read_bytes(),
        wsdl_placeholder=WSDL_PLACEHOLDER_ADDRESS,
        public_url=config.public_url,
        timestamps=TimestampPolicy(clock_skew=dt.timedelta(seconds=config.clock_skew)),
        response_signer=load_signer(config),
        on_refusal=lambda code, cid: axis.audit_refusal(code, "(request)", cid),
        direct=DirectOperations(axis, app.out_protocol),
        compute_slots=config.compute_slots,
    )
    guard.axis = axis  # type: ignore[attr-defined]
    return guard
