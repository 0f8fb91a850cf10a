"""Authentication: hashed bearer tokens, the server interceptor that sets the caller's identity, settings."""

from agentrun_core.auth.interceptor import SERVER_METADATA_OPTIONS, BearerAuthInterceptor, auth_interceptors
from agentrun_core.auth.settings import AuthMode, AuthSettings
from agentrun_core.auth.tokens import TokenConfigError, TokenEntry, TokenStore, generate_token, hash_token

__all__ = [
    "SERVER_METADATA_OPTIONS",
    "AuthMode",
    "AuthSettings",
    "BearerAuthInterceptor",
    "TokenConfigError",
    "TokenEntry",
    "TokenStore",
    "auth_interceptors",
    "generate_token",
    "hash_token",
]
