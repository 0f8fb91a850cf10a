"""Settings from the environment, one way for the whole project: pydantic-settings.

A settings class derives from `EnvSettings` and names the variable of each field it reads with `env("VAR")` (or
`env("VAR", "FALLBACK_VAR")`). Then:

- `Cls.from_env()` reads the environment (settings nested in it through a default factory read it too);
- `Cls(field=...)` takes only what it is given and the defaults, never the environment (tests, programs);
- `settings.with_overrides(**flags)` replaces the fields given a value (None keeps the current one): command-line
  flags override the environment this way.

Empty variables count as unset. A bad value raises SettingsError, one line naming the variable, the rule and the
value (cut: agentrun_core.echo), e.g. "AGENTRUN_MAX_TASK_BYTES must be at least 1, got '0'".
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, Literal, Self, TypeVar, cast

from pydantic import AfterValidator, AliasChoices, BeforeValidator, Field, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict

from agentrun_core.echo import shown


class SettingsError(ValueError):
    """A setting has a value that cannot be used. The message names the variable."""


class SecretValueError(ValueError):
    """Raised by a validator of a secret setting: the SettingsError says why without echoing the value."""


# The environment `from_env` reads, while it builds (None: settings built directly read no environment).
_ENVIRON: ContextVar[Mapping[str, str] | None] = ContextVar("agentrun_settings_environ", default=None)


def env(name: str, *fallbacks: str) -> Any:
    """The validation alias naming a field's environment variable (then the fallbacks, in order)."""
    return AliasChoices(name, *fallbacks) if fallbacks else name


def _expand_user(path: Path) -> Path:
    return path.expanduser()


# A path from a variable or a flag, with ~ expanded.
UserPath = Annotated[Path, AfterValidator(_expand_user)]


class _DeclaredEnvironment(EnvSettingsSource):
    """Only the variables fields declare (their validation alias), from the mapping `from_env` was given."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(settings_cls, case_sensitive=True, env_ignore_empty=True)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return {name: value for name, value in self._environ.items() if value != ""}

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        if field.validation_alias is None:
            return None, field_name, False
        return super().get_field_value(field, field_name)


class EnvSettings(BaseSettings):
    """Base of every settings class (see the module docstring)."""

    model_config = SettingsConfigDict(
        frozen=True,
        extra="forbid",
        validate_by_name=True,
        validate_by_alias=True,
        protected_namespaces=(),
        case_sensitive=True,
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        environ = _ENVIRON.get()
        if environ is None:
            return (init_settings,)
        return (init_settings, _DeclaredEnvironment(settings_cls, environ))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **values: Any) -> Self:
        """Settings from `environ` (default: os.environ); `values` (e.g. flags) win over it. SettingsError on a bad
        value, naming the variable."""
        with _reading(os.environ if environ is None else environ):
            return checked(lambda: cls(**values))

    @classmethod
    def current(cls) -> Self:
        """`from_env()` for settings read on a hot path (every model call): parsed once per distinct value of the
        variables the class's fields name, so a change is seen at once and an unchanged environment costs a lookup.
        Only for a class whose fields are not settings read from the environment themselves (theirs are not keyed)."""
        key = (cls, tuple(os.environ.get(name) for name in _variables_of(cls)))
        found = _CURRENT.get(key)
        if found is None:
            found = cls.from_env()
            if len(_CURRENT) >= _CURRENT_MAX:
                _CURRENT.clear()
            _CURRENT[key] = found
        return cast(Self, found)

    def with_overrides(self, **changes: Any) -> Self:
        """A copy with the fields given a value other than None replaced (validated like the environment)."""
        given = {name: value for name, value in changes.items() if value is not None}
        if not given:
            return self
        current = {name: getattr(self, name) for name in type(self).model_fields}
        return checked(lambda: type(self).model_validate({**current, **given}))


# EnvSettings.current's parsed settings, by class and the raw values of its variables.
_CURRENT: dict[tuple[type[EnvSettings], tuple[str | None, ...]], EnvSettings] = {}
_CURRENT_MAX = 64


@functools.cache
def _variables_of(cls: type[EnvSettings]) -> tuple[str, ...]:
    """The environment variables the class's fields name (`env("VAR", "FALLBACK")`)."""
    names: list[str] = []
    for field in cls.model_fields.values():
        alias = field.validation_alias
        if isinstance(alias, str):
            names.append(alias)
        elif isinstance(alias, AliasChoices):
            names.extend(choice for choice in alias.choices if isinstance(choice, str))
    return tuple(names)


@contextmanager
def _reading(environ: Mapping[str, str]) -> Iterator[None]:
    token = _ENVIRON.set(environ)
    try:
        yield
    finally:
        _ENVIRON.reset(token)


T = TypeVar("T")


def checked(build: Callable[[], T]) -> T:
    """`build()`, its ValidationError turned into a one-line SettingsError naming the variable."""
    try:
        return build()
    except ValidationError as exc:
        raise SettingsError(describe(exc.errors()[0])) from None


_TYPE_RULES = {
    "int_parsing": "must be an integer",
    "int_type": "must be an integer",
    "int_from_float": "must be an integer",
    "float_parsing": "must be a number",
    "float_type": "must be a number",
    "bool_parsing": "must be true or false",
    "bool_type": "must be true or false",
}


# Passwords in an echoed value: a URL's (scheme://user:password@host, up to the last @, so an unescaped @ or / in the
# password is hidden too) and a password= parameter's (?password=..., libpq's "host=db password=...").
_URL_PASSWORD = re.compile(r"(://[^:@/\s]*):\S*@")
_PASSWORD_PARAMETER = re.compile(r"(password\s*=\s*)[^&\s]*", re.IGNORECASE)


def _without_password(text: str) -> str:
    return _PASSWORD_PARAMETER.sub(r"\1***", _URL_PASSWORD.sub(r"\1:***@", text))


def describe(error: ErrorDetails) -> str:
    """One line: the variable (or field), what it must be, what it got."""
    name = ".".join(str(part) for part in error["loc"]) or "settings"
    kind = error["type"]
    ctx = error.get("ctx") or {}
    value = error.get("input")
    got = f", got {shown(_without_password(str(value)))}" if isinstance(value, str | int | float) else ""
    if kind in _TYPE_RULES:
        return f"{name} {_TYPE_RULES[kind]}{got}"
    if kind == "greater_than_equal":
        return f"{name} must be at least {ctx['ge']}{got}"
    if kind == "greater_than":
        return f"{name} must be greater than {ctx['gt']}{got}"
    if kind == "less_than_equal":
        return f"{name} must be at most {ctx['le']}{got}"
    if kind in ("literal_error", "enum"):
        return f"{name} must be {ctx.get('expected', 'one of the documented values')}{got}"
    if kind == "value_error":
        cause = ctx.get("error")
        got = "" if isinstance(cause, SecretValueError) else got
        return f"{name} {cause}{got}" if cause is not None else f"{name}: {error['msg']}"
    if kind == "extra_forbidden":
        return f"unknown setting {name}"
    return f"{name}: {error['msg']}{got}"


def setting(default: Any = None, variable: str | None = None, *fallbacks: str, **constraints: Any) -> Any:
    """A field read from `variable` (then `fallbacks`), or not from the environment when None."""
    alias = env(variable, *fallbacks) if variable else None
    factory = constraints.pop("default_factory", None)
    if factory is not None:
        return Field(default_factory=factory, validation_alias=alias, **constraints)
    return Field(default, validation_alias=alias, **constraints)


def _upper(value: Any) -> Any:
    return value.strip().upper() if isinstance(value, str) else value


def _lower(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


# AGENTRUN_LOG_LEVEL (any case) and AGENTRUN_LOG_FORMAT (json, text, or auto: text on a terminal).
LogLevel = Annotated[Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"], BeforeValidator(_upper)]
LogFormat = Annotated[Literal["json", "text", "auto"], BeforeValidator(_lower)]


def check_listen_address(value: Any) -> Any:
    """A gRPC listen address as given (ValueError saying what it must be otherwise); non-text passes."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.startswith("unix:"):
        return text
    _host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError("must be HOST:PORT with a port from 0 to 65535 (0: any free port)")
    return text


# A gRPC listen address: HOST:PORT (port 0-65535; [::1]:PORT for IPv6) or unix:PATH.
ListenAddress = Annotated[str, AfterValidator(check_listen_address)]


def check_client_target(value: Any) -> Any:
    """A plain HOST:PORT must have a port gRPC can reach (1-65535: gRPC would silently wrap 99999 to 34463); a
    target with a scheme (dns:///..., unix:..., ipv4:..., xds:///...) or without a port is gRPC's to resolve."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if not text:
        raise ValueError("must not be empty (HOST:PORT, or a gRPC target such as dns:///HOST:PORT or unix:PATH)")
    if ":/" in text or text.startswith(("unix:", "unix-abstract:", "ipv4:", "ipv6:", "vsock:")):
        return text
    host, sep, port = text.rpartition(":")
    if sep and (host.endswith("]") or ":" not in host) and port.isdigit() and not 1 <= int(port) <= 65535:
        raise ValueError("must be HOST:PORT with a port from 1 to 65535")
    return text


# A gRPC client target: HOST:PORT (port 1-65535), or any target with a scheme gRPC resolves.
ClientTarget = Annotated[str, AfterValidator(check_client_target)]


# AGENTRUN_EVENT_LOOP: auto (uvloop where installed), uvloop (required) or asyncio (agentrun_core.event_loop).
EventLoopChoice = Annotated[Literal["auto", "uvloop", "asyncio"], BeforeValidator(_lower)]


class ProcessSettings(EnvSettings):
    """What every agentrun process reads before it starts serving (the services, `agentrun serve`)."""

    event_loop: EventLoopChoice = setting("auto", "AGENTRUN_EVENT_LOOP")
