"""HTTP edge of the admin service: decoding, authentication and status codes only."""

from tollgate_admin.routes.keys import KeyController
from tollgate_admin.routes.models import ModelController
from tollgate_admin.routes.teams import TeamController
from tollgate_admin.routes.users import UserController

__all__ = ["KeyController", "ModelController", "TeamController", "UserController"]
