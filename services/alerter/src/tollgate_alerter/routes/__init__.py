"""The alerter's HTTP routes; `/health` and `/metrics` come from `tollgate_shared.web`."""

from tollgate_alerter.routes.health_services import health_services_router

__all__ = ["health_services_router"]
