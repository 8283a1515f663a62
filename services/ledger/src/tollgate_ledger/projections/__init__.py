"""Adapters that write the ledger's tables (and read them back for the HTTP API)."""
