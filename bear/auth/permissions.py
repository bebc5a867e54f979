"""What each role may do. One table, asked by every face."""

from __future__ import annotations

from bear.errors import PermissionDeniedError
from bear.models import Role, User

# permission -> the least role that has it (roles are ordered viewer < analyst < admin)
PERMISSIONS: dict[str, Role] = {
    "read": Role.VIEWER,  # events, totals, runs, logs, documents, rules, settings, sql
    "preview": Role.ANALYST,
    "run": Role.ANALYST,  # release, invoice, release and invoice
    "cancel": Role.ANALYST,
    "revert": Role.ANALYST,  # revert billing (a run, with a reason)
    "post": Role.ANALYST,  # post documents to accounting
    "test_notification": Role.ANALYST,
    "settings": Role.ADMIN,
    "rules": Role.ADMIN,
    "import": Role.ADMIN,
    "users": Role.ADMIN,
    "tokens": Role.ADMIN,
}
_RANK = {Role.VIEWER: 0, Role.ANALYST: 1, Role.ADMIN: 2}


def allowed(user: User | None, permission: str) -> bool:
    """Whether ``user`` may do ``permission`` (``None`` is the single-user owner: everything)."""
    if permission not in PERMISSIONS:
        raise KeyError(f"unknown permission {permission!r}")
    if user is None:
        return True
    if user.disabled:
        return False
    return _RANK[Role(user.role)] >= _RANK[PERMISSIONS[permission]]


def require(user: User | None, permission: str) -> None:
    """Raise ``PermissionDeniedError`` naming the role needed when ``user`` may not."""
    if not allowed(user, permission):
        assert user is not None
        need = PERMISSIONS[permission].value
        raise PermissionDeniedError(
            f"{user.name} ({user.role}) may not {permission.replace('_', ' ')}: "
            f"that needs the {need} role"
        )
