"""signed requests: systems' certificates and authentication method, the replay record

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # existing systems keep authenticating as they did (UsernameToken); new ones default to X.509
    with op.batch_alter_table("systems") as batch:
        batch.add_column(sa.Column("auth_method", sa.String(length=16), server_default="username-token", nullable=False))
    op.create_table(
        "system_certificates",
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("system_id", sa.String(length=64), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("serial", sa.String(length=64), nullable=False),
        sa.Column("not_before", sa.DateTime(timezone=True), nullable=False),
        sa.Column("not_after", sa.DateTime(timezone=True), nullable=False),
        sa.Column("pem", sa.Text(), nullable=False),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["system_id"], ["systems.id"], name=op.f("fk_system_certificates_system_id_systems"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("fingerprint", name=op.f("pk_system_certificates")),
    )
    op.create_index(op.f("ix_system_certificates_system_id"), "system_certificates", ["system_id"])
    op.create_table(
        "replay_records",
        sa.Column("signature_digest", sa.String(length=64), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("signature_digest", name=op.f("pk_replay_records")),
    )
    op.create_index(op.f("ix_replay_records_expires_at"), "replay_records", ["expires_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_replay_records_expires_at"), table_name="replay_records")
    op.drop_table("replay_records")
    op.drop_index(op.f("ix_system_certificates_system_id"), table_name="system_certificates")
    op.drop_table("system_certificates")
    with op.batch_alter_table("systems") as batch:
        batch.drop_column("auth_method")
