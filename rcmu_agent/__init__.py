"""rcmu-agent: ask about a photo with a personal memory; answers cite the regions they use.

Heavy dependencies (torch, dlib, Chroma) load inside the parts that need them, so importing this
package stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rcmu_agent.errors import RcmuError
from rcmu_agent.schema import RLE, Answer, Citation, ContextEntry, Entity, Region
from rcmu_agent.settings import Settings

if TYPE_CHECKING:
    from rcmu_agent.assistant import Assistant

__all__ = [
    "RLE",
    "Answer",
    "Assistant",
    "Citation",
    "ContextEntry",
    "Entity",
    "RcmuError",
    "Region",
    "Settings",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name == "Assistant":  # pulls in LangGraph; keep `import rcmu_agent` light
        from rcmu_agent.assistant import Assistant

        return Assistant
    raise AttributeError(f"module 'rcmu_agent' has no attribute {name!r}")
