"""Deployments: the gates a version passes, rollouts, rollback and the audit trail.

Import from the submodules (gates, metrics, service, audit).
"""
