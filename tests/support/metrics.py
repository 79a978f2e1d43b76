"""Reading a Prometheus text page in tests."""

from __future__ import annotations


def metric_value(text: str, series: str) -> float | None:
    """The value of one series (`name{labels}` as rendered) in a Prometheus text page, None if absent."""
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return None
