"""lienthong's reference client for agencies' document systems (``lienthong-client``).

- :mod:`lienthong_client.client` — the zeep client with safe settings (:class:`LienthongClient`).
- :mod:`lienthong_client.packets` — building edXML documents and status packets.
- :mod:`lienthong_client.sync` — the receive loop: list, fetch, store, acknowledge.
- :mod:`lienthong_client.cli` — the command line.
"""

from lienthong_client.client import FetchedPacket, GatewayFault, GatewayUnreachable, LienthongClient

__all__ = ["FetchedPacket", "GatewayFault", "GatewayUnreachable", "LienthongClient"]
