"""A model's held-out share and its no-model policy: checked, stored, audited.

Checked against the version serving now, so that a policy never answers what the model could
not: a class the classifier does not have, a rule over a feature it does not take, a fallback
of another kind of model. The change bumps the model's serving generation, so every worker
routes by it within one poll, and lands with its audit event in one transaction.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from backend.auth.tokens import Principal
from backend.db.tables import ModelRow
from backend.deploy.audit import record_event
from backend.errors import InputError, NotFound
from backend.predictions.reads import route_coverage
from backend.registry import Registry, parse_version
from backend.schemas import (
    DefaultPolicy,
    FallbackPolicy,
    HeldOutCoverage,
    HeldOutSettings,
    HeldOutStatus,
    ModelVersionInfo,
    RulePolicy,
)
from backend.serving.held_out import HELD_OUT_ROUTE


class HeldOutSettingsStore:
    def __init__(self, sessions: sessionmaker[Session], registry: Registry):
        self.sessions = sessions
        self.registry = registry

    def get(self, model: str) -> HeldOutSettings | None:
        with self.sessions() as session:
            row = session.scalar(select(ModelRow).where(ModelRow.name == model))
            if row is None:
                raise NotFound(f"no model named {model!r}", "model")
            return HeldOutSettings.model_validate(row.held_out) if row.held_out else None

    def status(self, model: str, window_s: float) -> HeldOutStatus:
        settings = self.get(model)
        since = time.time() - window_s
        requests, entities, everything = route_coverage(self.sessions, model, HELD_OUT_ROUTE, since)
        coverage = HeldOutCoverage(
            since=since, requests=requests, entities=entities, all_requests=everything
        )
        return HeldOutStatus(
            model=model,
            settings=settings,
            coverage=coverage,
            explanation=_explain(settings, coverage, window_s),
        )

    def set(
        self, model: str, settings: HeldOutSettings | None, reason: str, actor: Principal
    ) -> HeldOutSettings | None:
        """Store the settings (None: hold nothing out) after checking them."""
        checked = None if settings is None else self._checked(model, settings)
        with self.sessions.begin() as session:
            row = session.scalar(select(ModelRow).where(ModelRow.name == model))
            if row is None:
                raise NotFound(f"no model named {model!r}", "model")
            before = row.held_out
            row.held_out = checked.model_dump(mode="json") if checked is not None else None
            row.state_generation += 1  # every worker routes by the new share at its next poll
            record_event(
                session,
                actor,
                "held_out",
                model,
                to_version=row.active_version,
                reason=reason,
                details={"before": before, "after": row.held_out},
            )
        return checked

    # ------------------------------------------------------------------ checks

    def _checked(self, model: str, settings: HeldOutSettings) -> HeldOutSettings:
        info = self.registry.get_model(model)
        if info.active_version is None:
            raise InputError(
                f"model {model!r} serves no version yet: deploy one before holding traffic out "
                "(the policy is checked against what the model answers)",
                "model",
                status=409,
            )
        version = self.registry.get_version(model, info.active_version)
        return held_out_fitting(self.registry, model, version, settings)


def held_out_fitting(
    registry: Registry, model: str, version: ModelVersionInfo, settings: HeldOutSettings
) -> HeldOutSettings:
    """The settings as they apply to ``version`` serving ``model`` (answers as its classes),
    or InputError naming the field that does not fit it. Also the deployment gate's check: a
    version that the model's held-out policy does not fit may not start serving."""
    policy = settings.policy
    if isinstance(policy, DefaultPolicy):
        answer = _fitting_answer(version, policy.answer, "policy.answer")
        policy = policy.model_copy(update={"answer": answer})
    elif isinstance(policy, RulePolicy):
        policy = _checked_rules(version, policy)
    else:
        policy = _checked_fallback(registry, model, version, policy)
    return settings.model_copy(update={"policy": policy})


def _checked_fallback(
    registry: Registry, model: str, version: ModelVersionInfo, policy: FallbackPolicy
) -> FallbackPolicy:
    try:
        other = registry.get_model(policy.model)
    except NotFound as exc:
        raise InputError(f"no model named {policy.model!r}", "policy.model") from exc
    chosen = policy.version
    if chosen is not None:
        try:
            chosen = str(parse_version(chosen))
        except ValueError as exc:
            raise InputError(str(exc), "policy.version") from exc
        other_version = registry.get_version(policy.model, chosen)
    elif other.active_version is None:
        raise InputError(
            f"model {policy.model!r} serves no version: name one, or deploy one first",
            "policy.version",
        )
    else:
        other_version = registry.get_version(policy.model, other.active_version)
    if policy.model == model and (chosen is None or chosen == version.version):
        raise InputError(
            "the fallback would be the model's own serving version: held-out traffic must "
            "be answered without it (name another version or another model)",
            "policy",
        )
    if other_version.task != version.task:
        raise InputError(
            f"the fallback is a {other_version.task} model and {model!r} a {version.task} "
            "model: their answers are not comparable",
            "policy.model",
        )
    if other_version.task == "classification" and {
        str(c) for c in other_version.class_labels or []
    } != {str(c) for c in version.class_labels or []}:
        raise InputError(
            f"the fallback answers the classes {other_version.class_labels} and {model!r} "
            f"{version.class_labels}: held-out answers must be comparable with the model's",
            "policy.model",
        )
    missing = sorted(
        spec.name
        for spec in other_version.signature
        if spec.required and spec.name not in {s.name for s in version.signature}
    )
    if missing:
        raise InputError(
            f"the fallback needs features {model!r} is not sent: {', '.join(missing[:10])}",
            "policy.model",
        )
    return policy.model_copy(update={"version": chosen})


def _fitting_answer(version: ModelVersionInfo, answer: Any, field: str) -> Any:
    """The answer as the model would give it: one of its classes, or a number."""
    if version.task == "classification":
        classes = version.class_labels or []
        for label in classes:
            if str(label) == str(answer) and not isinstance(answer, list | dict):
                return label
        shown = ", ".join(repr(c) for c in classes[:20])
        raise InputError(f"{answer!r} is not one of the model's classes ({shown})", field)
    if isinstance(answer, bool) or not isinstance(answer, int | float):
        raise InputError("a regression model answers a number", field)
    return answer


def _checked_rules(version: ModelVersionInfo, policy: RulePolicy) -> RulePolicy:
    features = {spec.name for spec in version.signature}
    rules = []
    for i, rule in enumerate(policy.rules):
        for j, condition in enumerate(rule.when):
            if condition.feature not in features:
                raise InputError(
                    f"the model takes no feature {condition.feature!r}",
                    f"policy.rules[{i}].when[{j}].feature",
                )
        answer = _fitting_answer(version, rule.answer, f"policy.rules[{i}].answer")
        rules.append(rule.model_copy(update={"answer": answer}))
    otherwise = _fitting_answer(version, policy.otherwise, "policy.otherwise")
    return policy.model_copy(update={"rules": rules, "otherwise": otherwise})


def _explain(settings: HeldOutSettings | None, coverage: HeldOutCoverage, window_s: float) -> str:
    hours = window_s / 3600
    span = f"the last {hours:g} hour" + ("" if hours == 1 else "s")
    if settings is None or settings.share_percent == 0:
        return (
            "No traffic is held out: every request is answered by the model, so nothing shows "
            "whether the model's own answers shape the labels it is judged on. Hold out a small "
            "share (2% is usual) with a safe answer to measure it."
        )
    share = f"{coverage.requests / coverage.all_requests:.1%}" if coverage.all_requests else "none"
    return (
        f"{settings.share_percent:g}% of entities are answered by the {settings.policy.kind} "
        f"policy instead of the model, which still scores them unseen. In {span}: "
        f"{coverage.requests} held-out requests from {coverage.entities} entities ({share} of "
        f"{coverage.all_requests} requests). Their outcomes are not shaped by the model: "
        "compare them with served traffic to see a feedback loop."
    )
