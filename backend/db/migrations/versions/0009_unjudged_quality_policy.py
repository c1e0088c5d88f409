"""serving policy: what a rollout step does when its quality cannot be judged

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 12:40:00

Until now a step moved on while its quality check on labelled answers said "not judged";
the policy's new ``unjudged_quality`` decides, "wait" by default. Stored policies get the
field written out, so a reader sees what applies; the downgrade removes it again (the older
code refuses a policy with a field it does not know).
"""

import json
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

FIELD = "unjudged_quality"


def _rewrite(change: Any) -> None:
    bind = op.get_bind()
    rows = bind.execute(sa.text("SELECT name, policy FROM models WHERE policy IS NOT NULL")).all()
    for name, stored in rows:
        policy = json.loads(stored) if isinstance(stored, str) else dict(stored)
        changed = change(policy)
        bind.execute(
            sa.text("UPDATE models SET policy = :policy WHERE name = :name").bindparams(
                sa.bindparam("policy", type_=sa.JSON())
            ),
            {"name": name, "policy": changed},
        )


def upgrade() -> None:
    _rewrite(lambda policy: {**policy, FIELD: policy.get(FIELD, "wait")})


def downgrade() -> None:
    _rewrite(lambda policy: {k: v for k, v in policy.items() if k != FIELD})
