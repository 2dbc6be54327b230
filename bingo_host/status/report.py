"""The status report being filled: its data by section, and the problems found.

Its own module because checks.py and records.py both fill one, and checks.py imports records.py.
"""

from __future__ import annotations

from typing import Any


class Report:
    def __init__(self):
        self.data: dict[str, Any] = {}
        self.problems: list[dict[str, str]] = []

    def problem(self, check: str, message: str, severity: str = "error") -> None:
        self.problems.append({"check": check, "severity": severity, "message": message})
