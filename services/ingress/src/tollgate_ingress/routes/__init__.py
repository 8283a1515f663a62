"""HTTP edge of ingress: the OpenAI-compatible routes and the forwarded control paths."""
