"""labels name the model of the prediction they label (a request id is unique per model);
client tokens' constraint values take their features' types

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 12:30:00
"""

import json
import math
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

PAGE = 2_000


def upgrade() -> None:
    with op.batch_alter_table("labels") as batch:
        batch.add_column(sa.Column("model", sa.String(length=128), nullable=True))
        batch.drop_constraint("uq_label_prediction", type_="unique")
        batch.create_unique_constraint(
            "uq_label_model_prediction", ["model", "request_id", "row_index"]
        )
        batch.create_index("ix_labels_model_id", ["model", "id"])
    _back_fill_models()
    _type_token_constraints()


def _back_fill_models() -> None:
    """Each existing label takes the model of the prediction it joined, among the models its
    token could use. A label that joined predictions of several models (a request id shared by
    models) was seen on each of them: it is kept once per model its token may use. A label
    whose prediction is not in the log takes its token's model when the token had only one,
    and otherwise stays without a model (it joins nothing: attaching it to any model could
    show one model's caller's label on another's prediction)."""
    bind = op.get_bind()
    scopes = {
        name: _models(models)
        for name, models in bind.execute(sa.text("SELECT name, models FROM tokens")).all()
    }
    after = 0
    while True:
        labels = bind.execute(
            sa.text(
                "SELECT id, request_id, row_index, label, received_at, source FROM labels "
                "WHERE id > :after AND model IS NULL ORDER BY id LIMIT :page"
            ),
            {"after": after, "page": PAGE},
        ).all()
        if not labels:
            return
        after = labels[-1].id
        matched: dict[tuple[str, int], set[str]] = {}
        request_ids = sorted({label.request_id for label in labels})
        for start in range(0, len(request_ids), 400):
            rows = bind.execute(
                sa.text(
                    "SELECT request_id, row_index, model FROM predictions WHERE request_id IN :ids"
                ).bindparams(sa.bindparam("ids", expanding=True)),
                {"ids": request_ids[start : start + 400]},
            ).all()
            for request_id, row_index, model in rows:
                matched.setdefault((request_id, row_index), set()).add(model)
        for label in labels:
            scope = scopes.get(label.source)
            models = sorted(
                m
                for m in matched.get((label.request_id, label.row_index), set())
                if scope is None or m in scope
            )
            if not models and scope is not None and len(scope) == 1:
                models = sorted(scope)
            if not models:
                continue
            bind.execute(
                sa.text("UPDATE labels SET model = :model WHERE id = :id"),
                {"model": models[0], "id": label.id},
            )
            for model in models[1:]:
                # Copied inside the database: PostgreSQL hands JSON back decoded, and a text
                # label ("fraud") bound again as a parameter is not valid JSON.
                bind.execute(
                    sa.text(
                        "INSERT INTO labels (model, request_id, row_index, label, received_at, "
                        "source) SELECT :model, request_id, row_index, label, received_at, "
                        "source FROM labels WHERE id = :id"
                    ),
                    {"model": model, "id": label.id},
                )


def _type_token_constraints() -> None:
    """Constraints typed on the command line were stored as text ("12"), which no validated
    input ever equals: give them the type of the feature in the token's models' serving (else
    newest) version. A value that does not convert is left as it was."""
    bind = op.get_bind()
    signatures: dict[str, dict[str, str]] = {}
    for name, active, number, signature in bind.execute(
        sa.text(
            "SELECT m.name, m.active_version, v.number, v.signature FROM models m "
            "JOIN model_versions v ON v.model_id = m.id ORDER BY v.number"
        )
    ).all():
        if active is None or str(number) == str(active) or name not in signatures:
            specs = json.loads(signature) if isinstance(signature, str) else signature
            signatures[name] = {spec["name"]: spec["type"] for spec in specs}
    tokens = bind.execute(
        sa.text("SELECT id, models, constraints FROM tokens WHERE role = 'client'")
    ).all()
    for token_id, models, constraints in tokens:
        scope = _models(models) or frozenset()
        stored = json.loads(constraints) if isinstance(constraints, str) else constraints
        if not stored or not scope:
            continue
        typed = {
            feature: [
                _typed(value, {signatures.get(m, {}).get(feature) for m in scope})
                for value in values
            ]
            for feature, values in stored.items()
        }
        if typed != stored:
            bind.execute(
                sa.text("UPDATE tokens SET constraints = :constraints WHERE id = :id"),
                {"constraints": json.dumps(typed), "id": token_id},
            )


def _typed(value: Any, types: set[str | None]) -> Any:
    if not isinstance(value, str) or len(types) != 1:
        return value
    kind = next(iter(types))
    text = value.strip()
    try:
        if kind == "int":
            return int(text)
        if kind == "float":
            number = float(text)
            return number if math.isfinite(number) else value
    except ValueError:
        return value
    if kind == "bool" and text.lower() in ("true", "false", "1", "0", "yes", "no"):
        return text.lower() in ("true", "1", "yes")
    return value


def _models(value: Any) -> frozenset[str] | None:
    if value is None:
        return None
    models = json.loads(value) if isinstance(value, str) else value
    return None if models is None else frozenset(models)


def downgrade() -> None:
    bind = op.get_bind()
    # Keep one label per prediction, as the old unique constraint demands.
    bind.execute(
        sa.text(
            "DELETE FROM labels WHERE id NOT IN "
            "(SELECT MIN(id) FROM labels GROUP BY request_id, row_index)"
        )
    )
    with op.batch_alter_table("labels") as batch:
        batch.drop_index("ix_labels_model_id")
        batch.drop_constraint("uq_label_model_prediction", type_="unique")
        batch.create_unique_constraint("uq_label_prediction", ["request_id", "row_index"])
        batch.drop_column("model")
