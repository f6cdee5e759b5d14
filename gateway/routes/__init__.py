"""HTTP routes: the course-compatible core, /v1 extensions and health checks."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi.responses import JSONResponse


class FastJSON(JSONResponse):
    """JSON rendered by orjson: results can be megabytes of base64 text."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)
