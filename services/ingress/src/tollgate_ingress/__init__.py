"""Tollgate ingress service."""
