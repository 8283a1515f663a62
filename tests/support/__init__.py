"""Helpers for the test suite: databases, service processes, fake upstreams and receivers."""
