"""Round trips with annotation tools: Label Studio (push/pull through label-studio-sdk) and
pre-label acceptance, shared with the file round trip.

Submodules import their heavy dependencies lazily; importing this package costs nothing.
"""

from __future__ import annotations

from .acceptance import acceptance, seconds_saved, sum_acceptance

__all__ = ["acceptance", "acceptance_by_round", "seconds_saved", "sum_acceptance"]


def acceptance_by_round(store):  # type: ignore[no-untyped-def]
    """Pre-label acceptance per round (items, accepted, adjusted, deleted, added,
    seconds_saved), for ``boxloop status`` and the report."""
    return store.acceptance_by_round()
