"""The pure core of the gateway: no I/O, no clock, no globals, no spyne, no SQLAlchemy.

Everything here takes what it needs as arguments (bytes, loaded schemas, the current time, directory
facts) and returns frozen values or raises :mod:`gateway.errors`. ``tests/unit/test_core_purity.py`` keeps
it that way by checking the imports of every module in this package.

- :mod:`gateway.core.xmlparse` — the one hardened XML parser (size first, no DTD, no entities, no network).
- :mod:`gateway.core.packet` — reads an edXML packet into a frozen :class:`~gateway.core.packet.Packet`.
- :mod:`gateway.core.routing` — who a packet goes to, and whether the caller may send it.
- :mod:`gateway.core.credentials` — hashing and checking connected systems' secrets.
"""
