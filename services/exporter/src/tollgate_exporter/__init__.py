"""Tollgate exporter service."""
