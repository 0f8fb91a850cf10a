"""What a model name may be: a bare Gemini model name (gemini-2.5-flash, gemini-2.5-flash-preview-05-20), the
part that google-genai puts in the request's URL path (it refuses '..', '?' and '&' with a ValueError)."""

from __future__ import annotations

import re

MODEL_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def model_name_problem(bare: str) -> str | None:
    """Why `bare` (a model name without its googleai/ prefix) is not a model name, or None when it is one."""
    if MODEL_NAME_PATTERN.fullmatch(bare) and ".." not in bare:
        return None
    return (
        f"{bare!r} is not a model name such as gemini-2.5-flash or googleai/gemini-2.5-flash (letters, digits, "
        "'.', '_' and '-', starting with a letter or digit, no '..')"
    )
