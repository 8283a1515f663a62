"""Adapters to the model providers ingress forwards to."""
