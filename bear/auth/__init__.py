"""The team: users with roles and scopes, API tokens, sign-in throttling, and the change log.

Passwords and tokens are kept only as argon2 hashes (``pwdlib``). Everything a person may do
is decided here (``permissions``), so the dashboard, the HTTP API and the CLI ask the same
question and get the same answer.
"""

from bear.auth.permissions import PERMISSIONS, allowed, require
from bear.auth.store import Team
from bear.auth.throttle import Throttle

__all__ = ["PERMISSIONS", "Team", "Throttle", "allowed", "require"]
