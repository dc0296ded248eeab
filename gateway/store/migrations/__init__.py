"""Alembic migrations of the gateway's database (``lienthong db upgrade``)."""
