"""Gating a version for a purpose: run the gates, store the report, refuse with it (409)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from backend.auth.tokens import Principal
from backend.db.tables import GateReportRow, ModelRow
from backend.deploy.audit import record_event
from backend.deploy.gates import run_gates
from backend.errors import Conflict, InputError
from backend.registry import Registry
from backend.schemas import (
    AuditAction,
    GatePurpose,
    GateReport,
    HeldOutSettings,
    ModelVersionInfo,
)


class GatesRefused(Conflict):
    """409 with the whole gate report in the error body."""

    def __init__(self, what: str, report: GateReport):
        failed = [g.gate for g in report.gates if g.outcome == "failed"]
        super().__init__(
            f"{what} refused: version {report.version} failed the {', '.join(failed)} "
            "gate(s); see gate_report",
            "version",
            details={"gate_report": report.model_dump(mode="json")},
        )
        self.report = report


@dataclass(frozen=True)
class GateRequest:
    """Who wants ``version`` of ``model`` to serve for what, with what the gates need."""

    model: str
    version: str
    purpose: GatePurpose
    actor: Principal
    # The version serving now (its signature is what today's callers send), or None.
    active: str | None
    reason: str
    force_signature: bool = False
    # The version's record when the caller already read it (not read twice).
    info: ModelVersionInfo | None = None


class GateKeeper:
    def __init__(self, sessions: sessionmaker[Session], registry: Registry):
        self.sessions = sessions
        self.registry = registry

    def passing_report(self, request: GateRequest) -> GateReport:
        """Run the gates and store their report; a refusal is recorded in the audit trail
        and raised as 409 with the report."""
        model, version = request.model, request.version
        info = request.info or self.registry.get_version(model, version)
        active = request.active
        callers = self.registry.get_version(model, active).signature if active else None
        if request.force_signature and not request.reason.strip():
            raise InputError("forcing a signature change needs a reason", "reason")
        run = run_gates(
            self.registry,
            info,
            model,
            purpose=request.purpose,
            checked_by=request.actor.name,
            callers_signature=callers,
            force_reason=request.reason if request.force_signature else None,
            held_out=self._held_out(model),
        )
        report = run.report
        with self.sessions.begin() as session:
            row = GateReportRow(
                model=model,
                version=version,
                purpose=request.purpose,
                passed=report.passed,
                checked_by=request.actor.name,
                checked_at=report.checked_at,
                report=report.model_dump(mode="json", exclude={"id"}),
            )
            session.add(row)
            session.flush()
            report.id = row.id
        if not report.passed:
            self._record_refusal(request, report)
            raise GatesRefused(
                "deployment" if request.purpose == "deploy" else request.purpose, report
            )
        return report

    def _held_out(self, model: str) -> HeldOutSettings | None:
        with self.sessions() as session:
            stored = session.scalar(select(ModelRow.held_out).where(ModelRow.name == model))
        return HeldOutSettings.model_validate(stored) if stored else None

    def _record_refusal(self, request: GateRequest, report: GateReport) -> None:
        action: AuditAction = f"{request.purpose}_refused"  # type: ignore[assignment]
        failed = [g.gate for g in report.gates if g.outcome == "failed"]
        with self.sessions.begin() as session:
            record_event(
                session,
                request.actor,
                action,
                request.model,
                from_version=request.active,
                to_version=request.version,
                reason=request.reason,
                details={"gate_report_id": report.id, "failed_gates": failed},
            )
