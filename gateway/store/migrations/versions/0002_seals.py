"""agency seals: per-agency signature policy, registered certificates, the verified seal of each packet

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("agencies") as batch:
        batch.add_column(sa.Column("require_signature", sa.Boolean(), server_default=sa.text("true"), nullable=False))
        batch.add_column(sa.Column("allow_sha1", sa.Boolean(), server_default=sa.text("false"), nullable=False))
    op.create_table(
        "agency_certificates",
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("agency_code", sa.String(length=64), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("serial", sa.String(length=64), nullable=False),
        sa.Column("not_after", sa.DateTime(timezone=True), nullable=False),
        sa.Column("pem", sa.Text(), nullable=False),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["agency_code"], ["agencies.code"], name=op.f("fk_agency_certificates_agency_code_agencies")),
        sa.PrimaryKeyConstraint("fingerprint", name=op.f("pk_agency_certificates")),
    )
    op.create_index(op.f("ix_agency_certificates_agency_code"), "agency_certificates", ["agency_code"])
    with op.batch_alter_table("packets") as batch:
        batch.add_column(sa.Column("signer_fingerprint", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("signer_subject", sa.Text(), nullable=True))
        batch.add_column(sa.Column("signer_serial", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("signature_algorithm", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("digest_algorithm", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("seal_verified_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("legacy_sha1", sa.Boolean(), server_default=sa.text("false"), nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("packets") as batch:
        for column in ("legacy_sha1", "seal_verified_at", "digest_algorithm", "signature_algorithm",
                       "signer_serial", "signer_subject", "signer_fingerprint"):
            batch.drop_column(column)
    op.drop_index(op.f("ix_agency_certificates_agency_code"), table_name="agency_certificates")
    op.drop_table("agency_certificates")
    with op.batch_alter_table("agencies") as batch:
        batch.drop_column("allow_sha1")
        batch.drop_column("require_signature")
