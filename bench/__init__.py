"""The lienthong benchmark: ``python -m bench`` (see ``bench/README.md``).

A real gateway (``lienthong serve``: gunicorn, N workers) on SQLite and on a PostgreSQL server started for
the run, driven over HTTP on 127.0.0.1 by load-generator processes that only post pre-built SOAP requests;
beside it, in the same run and on the same machine, the raw bound (what a packet costs at minimum, without
HTTP or SOAP; for X.509-signed requests with the request's signature verify) and the cost of seal and
WS-Security verification against a bare ``xmlsec`` verify.

Modules: :mod:`bench.world` (database, directory, seals, gateway), :mod:`bench.packets` (sealed packets
and SOAP requests), :mod:`bench.load` (the load generator), :mod:`bench.monitor` (memory and CPU of the
gateway processes), :mod:`bench.scenarios` (send, send-x509, receive, mixed, large), :mod:`bench.rawbound`,
:mod:`bench.verify`, :mod:`bench.profile`, :mod:`bench.report` (table, JSON, chart), :mod:`bench.cli`.
"""
