"""the document's life: recall/update/replace links, per-recipient business state, the trace of events

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("packets") as batch:
        batch.add_column(sa.Column("origin_packet_id", Id, nullable=True))
        batch.create_foreign_key(
            op.f("fk_packets_origin_packet_id_packets"), "packets", ["origin_packet_id"], ["id"]
        )
    op.create_index("ix_packets_sender_id", "packets", ["sender_code", "id"])
    op.create_index("ix_packets_answers", "packets", ["answers_packet_id", "sender_code"])
    op.create_index("ix_packets_origin", "packets", ["origin_packet_id"])
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(sa.Column("business_status_staff", sa.String(length=100), nullable=True))
        batch.add_column(sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("due_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("lifecycle", sa.String(length=20), nullable=True))
        batch.add_column(sa.Column("lifecycle_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("lifecycle_doc_id", sa.String(length=36), nullable=True))
    op.create_index("ix_deliveries_type_created", "deliveries", ["message_type", "created_at"])
    # deliveries that already had a business status were answered then (as near as history tells)
    op.execute("UPDATE deliveries SET answered_at = business_status_at WHERE business_status IS NOT NULL")
    op.create_table(
        "events",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("packet_id", Id, nullable=False),
        sa.Column("recipient_code", sa.String(length=64), nullable=True),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("agency_code", sa.String(length=64), nullable=True),
        sa.Column("system_id", sa.String(length=64), nullable=True),
        sa.Column("staff", sa.String(length=100), nullable=True),
        sa.Column("status_code", sa.String(length=12), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("related_doc_id", sa.String(length=36), nullable=True),
        sa.ForeignKeyConstraint(["packet_id"], ["packets.id"], name=op.f("fk_events_packet_id_packets")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
    )
    op.create_index("ix_events_packet", "events", ["packet_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_events_packet", table_name="events")
    op.drop_table("events")
    op.drop_index("ix_deliveries_type_created", table_name="deliveries")
    with op.batch_alter_table("deliveries") as batch:
        for column in ("lifecycle_doc_id", "lifecycle_at", "lifecycle", "due_at", "answered_at", "business_status_staff"):
            batch.drop_column(column)
    op.drop_index("ix_packets_origin", table_name="packets")
    op.drop_index("ix_packets_answers", table_name="packets")
    op.drop_index("ix_packets_sender_id", table_name="packets")
    with op.batch_alter_table("packets") as batch:
        batch.drop_constraint(op.f("fk_packets_origin_packet_id_packets"), type_="foreignkey")
        batch.drop_column("origin_packet_id")
