"""What a function's pip requirements may be. Checked where they enter (the
gateway, at registration) and again where they are used (a worker, before pip)."""

from __future__ import annotations

from collections.abc import Sequence

MAX_REQUIREMENTS = 200
MAX_REQUIREMENT_CHARS = 500


def validate_requirements(requirements: Sequence[object]) -> tuple[str, ...]:
    """The normalized set (sorted, deduplicated, whitespace collapsed) of valid
    requirements; ValueError names the first bad one. Cheap: usable at registration."""
    if len(requirements) > MAX_REQUIREMENTS:
        raise ValueError(f"more than {MAX_REQUIREMENTS} requirements")
    # pip resolves the set as a whole: order and duplicates do not matter.
    return tuple(sorted({_check_requirement(r) for r in requirements}))


def _check_requirement(req: object) -> str:
    """A requirement is one pip specifier, never an option nor several lines."""
    if not isinstance(req, str):
        raise ValueError(f"requirement {req!r} is not a string")
    text = " ".join(req.split())
    if not text:
        raise ValueError("empty requirement")
    if len(text) > MAX_REQUIREMENT_CHARS:
        raise ValueError(f"requirement longer than {MAX_REQUIREMENT_CHARS} characters")
    if not all(c.isprintable() for c in req):
        raise ValueError(f"requirement {req!r} contains a line break or control character")
    if text.startswith("-"):
        raise ValueError(f"requirement {req!r} starts with '-': pip options are not allowed")
    return text
