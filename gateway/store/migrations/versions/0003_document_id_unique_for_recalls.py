"""one DocumentId per sender for new documents and recalls alike (BussinessDocType 0 and 1)

The check in the gateway refused a second type-1 packet with the same DocumentId, but only type 0 was
backed by the unique index, so two concurrent requests could both pass the check.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

OLD = "message_type = 'edoc' AND business_doc_type = 0"
NEW = "message_type = 'edoc' AND business_doc_type IN (0, 1)"


def _recreate(where: str) -> None:
    with op.batch_alter_table("packets") as batch:
        batch.drop_index("uq_packets_new_document_id")
        batch.create_index(
            "uq_packets_new_document_id",
            ["sender_code", "document_id"],
            unique=True,
            sqlite_where=sa.text(where),
            postgresql_where=sa.text(where),
        )


def upgrade() -> None:
    _recreate(NEW)


def downgrade() -> None:
    _recreate(OLD)
