"""The SQLAlchemy edge: tables, the unit of work, repositories and Alembic migrations."""
