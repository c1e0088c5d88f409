"""Reusable widgets and item models of the console."""
