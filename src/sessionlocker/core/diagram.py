"""The locker's state diagram, drawn from ``TRANSITIONS`` (Mermaid syntax) for the docs."""

from __future__ import annotations

from sessionlocker.core.states import TRANSITIONS

__all__ = ["mermaid"]


def mermaid() -> str:
    """The transition table as a Mermaid ``stateDiagram-v2``."""
    lines = ["stateDiagram-v2", "    [*] --> idle"]
    for (source, event), target in TRANSITIONS.items():
        lines.append(f"    {source.value} --> {target.value}: {event.value}")
    return "\n".join(lines) + "\n"
