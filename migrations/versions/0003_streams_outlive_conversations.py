"""streams outlive their conversations

Deleting a conversation no longer deletes its streams rows: they hold the
usage and spend history and are the tombstones of used stream ids. The
foreign key becomes nullable with ON DELETE SET NULL, and the rows keep their
own token counts (the reply's message goes with the conversation).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 10:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

FK = 'fk_streams_conversation_id_conversations'


def upgrade():
    with op.batch_alter_table('streams', schema=None) as batch_op:
        batch_op.add_column(sa.Column('prompt_tokens', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('completion_tokens', sa.Integer(), nullable=True))
        batch_op.drop_constraint(FK, type_='foreignkey')
        batch_op.alter_column('conversation_id', existing_type=sa.String(length=32), nullable=True)
        batch_op.create_foreign_key(FK, 'conversations', ['conversation_id'], ['id'], ondelete='SET NULL')
    # Backfill the token counts of finished streams from their replies.
    op.execute(
        'UPDATE streams SET prompt_tokens = (SELECT prompt_tokens FROM messages WHERE messages.id = streams.message_id), '
        'completion_tokens = (SELECT completion_tokens FROM messages WHERE messages.id = streams.message_id) '
        'WHERE message_id IS NOT NULL'
    )


def downgrade():
    # Rows whose conversation is gone cannot satisfy the old NOT NULL foreign key: they are dropped.
    op.execute('DELETE FROM streams WHERE conversation_id IS NULL')
    with op.batch_alter_table('streams', schema=None) as batch_op:
        batch_op.drop_constraint(FK, type_='foreignkey')
        batch_op.alter_column('conversation_id', existing_type=sa.String(length=32), nullable=False)
        batch_op.create_foreign_key(FK, 'conversations', ['conversation_id'], ['id'], ondelete='CASCADE')
        batch_op.drop_column('completion_tokens')
        batch_op.drop_column('prompt_tokens')
