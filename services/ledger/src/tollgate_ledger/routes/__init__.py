"""The ledger's read-only HTTP API."""
