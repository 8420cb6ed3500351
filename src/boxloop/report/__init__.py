"""The HTML report: rounds, mAP-vs-labels curves, per-class AP, acceptance, the selection
gallery with its why, and an embedding map, in one self-contained file."""

from __future__ import annotations

from .html import build_report, render_report

__all__ = ["build_report", "render_report"]
