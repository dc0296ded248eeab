"""lienthong: a national document axis for signed edXML packets.

Layers (inner to outer): ``gateway.core`` (pure rules), ``gateway.axis`` (the operations, one transaction
each), ``gateway.store`` (SQLAlchemy) and ``gateway.soap`` (spyne), ``gateway.cli`` (the operator).
"""

__version__ = "0.1.0"
