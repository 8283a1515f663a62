"""Tollgate ledger service."""
