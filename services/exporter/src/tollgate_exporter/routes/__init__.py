"""HTTP routes of the exporter."""
