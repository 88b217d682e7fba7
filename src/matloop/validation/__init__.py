"""Validation of trained potentials: physics checks (:mod:`.physics`) and the HTML/JSON report."""

from __future__ import annotations

from matloop.validation.config import (
    ReportConfig,
    ReportSettings,
    Thresholds,
    load_report_config,
)
from matloop.validation.report import build_report

__all__ = [
    "ReportConfig",
    "ReportSettings",
    "Thresholds",
    "build_report",
    "load_report_config",
]
