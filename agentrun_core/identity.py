"""Who is calling: set per request by the authentication interceptor, read by servicers.

With authentication switched off (local development), every caller is the local admin `LOCAL_IDENTITY`.
"""

from __future__ import annotations

import contextvars
import enum
from dataclasses import dataclass


class Role(enum.StrEnum):
    USER = "user"
    ADMIN = "admin"
    # The execution service: records runs on behalf of users.
    SERVICE = "service"


@dataclass(frozen=True, slots=True)
class Identity:
    user: str
    role: Role

    @property
    def sees_everything(self) -> bool:
        return self.role in (Role.ADMIN, Role.SERVICE)

    @property
    def may_record_runs(self) -> bool:
        return self.role in (Role.ADMIN, Role.SERVICE)

    @property
    def may_delete_runs(self) -> bool:
        """Admins delete any run and users their own; the execution service only records runs."""
        return self.role in (Role.ADMIN, Role.USER)


LOCAL_IDENTITY = Identity(user="local", role=Role.ADMIN)

current_identity: contextvars.ContextVar[Identity] = contextvars.ContextVar(
    "agentrun_current_identity", default=LOCAL_IDENTITY
)
