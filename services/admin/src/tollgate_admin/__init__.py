"""Tollgate admin service."""
