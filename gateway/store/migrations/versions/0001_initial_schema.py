"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-12-04 16:01:41.354404
"""

from alembic import op
import sqlalchemy as sa


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('agencies',
    sa.Column('code', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('parent_code', sa.String(length=64), nullable=True),
    sa.Column('email', sa.String(length=100), nullable=True),
    sa.Column('old_code', sa.String(length=64), nullable=True),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('code', name=op.f('pk_agencies'))
    )
    op.create_table('packets',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('doc_id', sa.String(length=36), nullable=False),
    sa.Column('message_type', sa.String(length=8), nullable=False),
    sa.Column('sender_code', sa.String(length=64), nullable=False),
    sa.Column('sender_system', sa.String(length=64), nullable=False),
    sa.Column('document_id', sa.String(length=255), nullable=True),
    sa.Column('business_doc_type', sa.Integer(), nullable=False),
    sa.Column('subject', sa.Text(), nullable=True),
    sa.Column('code', sa.String(length=64), nullable=True),
    sa.Column('status_code', sa.String(length=2), nullable=True),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('answers_packet_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('content', sa.LargeBinary(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['answers_packet_id'], ['packets.id'], name=op.f('fk_packets_answers_packet_id_packets')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_packets')),
    sa.UniqueConstraint('doc_id', name=op.f('uq_packets_doc_id')),
    sa.UniqueConstraint('sender_code', 'sha256', name=op.f('uq_packets_sender_code_sha256'))
    )
    with op.batch_alter_table('packets', schema=None) as batch_op:
        batch_op.create_index('ix_packets_sender_document_id', ['sender_code', 'document_id'], unique=False)
        batch_op.create_index('ix_packets_sender_type_created', ['sender_code', 'message_type', 'created_at'], unique=False)
        batch_op.create_index('uq_packets_new_document_id', ['sender_code', 'document_id'], unique=True, sqlite_where=sa.text("message_type = 'edoc' AND business_doc_type = 0"), postgresql_where=sa.text("message_type = 'edoc' AND business_doc_type = 0"))

    op.create_table('systems',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('secret_hash', sa.String(length=200), nullable=False),
    sa.Column('is_admin', sa.Boolean(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_systems'))
    )
    op.create_table('deliveries',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('packet_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('recipient_code', sa.String(length=64), nullable=False),
    sa.Column('message_type', sa.String(length=8), nullable=False),
    sa.Column('state', sa.String(length=12), nullable=False),
    sa.Column('fail_reason', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('fetched_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('acked_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('acked_by', sa.String(length=64), nullable=True),
    sa.Column('business_status', sa.String(length=2), nullable=True),
    sa.Column('business_status_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['packet_id'], ['packets.id'], name=op.f('fk_deliveries_packet_id_packets')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_deliveries')),
    sa.UniqueConstraint('packet_id', 'recipient_code', name=op.f('uq_deliveries_packet_id_recipient_code'))
    )
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.create_index('ix_deliveries_inbox', ['recipient_code', 'message_type', 'state', 'id'], unique=False)

    op.create_table('system_agencies',
    sa.Column('system_id', sa.String(length=64), nullable=False),
    sa.Column('agency_code', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['agency_code'], ['agencies.code'], name=op.f('fk_system_agencies_agency_code_agencies')),
    sa.ForeignKeyConstraint(['system_id'], ['systems.id'], name=op.f('fk_system_agencies_system_id_systems'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('system_id', 'agency_code', name=op.f('pk_system_agencies'))
    )


def downgrade() -> None:
    op.drop_table('system_agencies')
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_index('ix_deliveries_inbox')

    op.drop_table('deliveries')
    op.drop_table('systems')
    with op.batch_alter_table('packets', schema=None) as batch_op:
        batch_op.drop_index('uq_packets_new_document_id', sqlite_where=sa.text("message_type = 'edoc' AND business_doc_type = 0"), postgresql_where=sa.text("message_type = 'edoc' AND business_doc_type = 0"))
        batch_op.drop_index('ix_packets_sender_type_created')
        batch_op.drop_index('ix_packets_sender_document_id')

    op.drop_table('packets')
    op.drop_table('agencies')
