"""A served app with reporting and triage tokens, and predictions to report on."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from fastapi.testclient import TestClient

from backend.api import create_app
from backend.workspace import Workspace
from tests.helpers import TOY_ROW

PRICE_ROW = {"x1": 0.5, "x2": -1.0}


@dataclass
class ReportWorld:
    client: TestClient
    workspace: Workspace
    headers: dict[str, dict[str, str]]

    def predict(self, model: str = "toy", who: str = "app") -> str:
        row = TOY_ROW if model == "toy" else PRICE_ROW
        answer = self.client.post(
            f"/v1/models/{model}:predict", headers=self.headers[who], json={"instances": [row]}
        )
        assert answer.status_code == 200, answer.text
        return str(answer.json()["request_id"])

    def file(self, who: str = "app", **body: Any) -> dict[str, Any]:
        body.setdefault("category", "wrong_answer")
        if "request_id" not in body:
            body["request_id"] = self.predict(body.get("model") or "toy", who)
        answer = self.client.post("/api/v1/reports", headers=self.headers[who], json=body)
        assert answer.status_code == 201, answer.text
        return dict(answer.json())

    def patch(self, report_id: int, who: str = "support", **change: Any) -> Any:
        return self.client.patch(
            f"/api/v1/reports/{report_id}", headers=self.headers[who], json=change
        )

    def detail(self, report_id: int, who: str = "support") -> dict[str, Any]:
        answer = self.client.get(f"/api/v1/reports/{report_id}", headers=self.headers[who])
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    def inbox(self, who: str = "support", **params: Any) -> dict[str, Any]:
        answer = self.client.get("/api/v1/reports", headers=self.headers[who], params=params)
        assert answer.status_code == 200, answer.text
        return dict(answer.json())


def report_world(workspace: Workspace) -> Iterator[ReportWorld]:
    tokens = {
        "admin": workspace.admin_token(),
        # An end user's application: a client token for the toy model only.
        "app": workspace.tokens.create("shop-app", "client", ["toy"]),
        "other-app": workspace.tokens.create("other-app", "client", ["toy"]),
        "price-app": workspace.tokens.create("price-app", "client", ["price"]),
        "support": workspace.tokens.create("support", "support"),
        "toy-support": workspace.tokens.create("toy-support", "support", ["toy"]),
        "price-support": workspace.tokens.create("price-support", "support", ["price"]),
        "engineer": workspace.tokens.create("engineer", "engineer"),
    }
    headers = {name: {"Authorization": f"Bearer {token}"} for name, token in tokens.items()}
    with TestClient(create_app(workspace=workspace)) as client:
        yield ReportWorld(client, workspace, headers)
