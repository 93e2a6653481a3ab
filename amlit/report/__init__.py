"""``amlit report``: the paper's tables and Figure 6 from tested runs (``paper.py`` holds the published numbers)."""

from amlit.report.command import make_report

__all__ = ["make_report"]
