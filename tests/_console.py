"""Reading the CLI's console output in tests."""

from __future__ import annotations


def flat(output: str) -> str:
    """CLI output without the console's line wrapping (rich wraps long paths anywhere)."""
    return "".join(output.split())
