"""Tollgate alerter service."""
