"""Embedded NATS, PostgreSQL and Redis, and the supervisor behind `./just up`."""
