"""Monitoring: the live prediction feed and the live per-second statistics."""
