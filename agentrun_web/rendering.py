"""Jinja2 templates (shipped in the package, autoescaped) and the helpers every page uses."""

from __future__ import annotations

import hashlib
from importlib import resources
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse

from agentrun_web.security import page_context
from agentrun_web.views import format as fmt
from agentrun_web.views import steps as st
from agentrun_web.views import waterfall as wf


def asset_version() -> str:
    """A digest of the scripts and styles, in their URLs: browsers keep them an hour, but never across versions."""
    digest = hashlib.sha256()
    for name in ("app.js", "app.css", "live-worker.js"):
        digest.update((resources.files("agentrun_web") / "static" / name).read_bytes())
    return digest.hexdigest()[:12]


def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("agentrun_web", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        # The templates ship in the package: no stat() of their files on every include.
        auto_reload=False,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals.update(
        asset_version=asset_version(),
        fmt=fmt,
        wf=wf,
        kind_label=st.kind_label,
        kind_of=st.kind_of,
        is_known=st.is_known,
        payload_text=st.payload_text,
    )
    env.filters.update(
        count=fmt.count,
        marked=fmt.marked,
        pretty_json=fmt.pretty_json,
        seconds=fmt.human_seconds,
        number=lambda value: f"{value:.6g}",
    )
    return env


class Renderer:
    """Renders pages (with the layout's common context) and fragments (for live updates and the side pane)."""

    def __init__(self, env: Environment | None = None) -> None:
        self.env = env or environment()

    def fragment(self, template: str, **context: Any) -> str:
        return self.env.get_template(template).render(**context)

    def page(self, request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        html = self.env.get_template(template).render(**page_context(request), **context)
        return HTMLResponse(html, status_code=status_code)
