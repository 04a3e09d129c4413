"""The campaign report (``omnicast report``): one self-contained HTML page with inline SVG charts, and CSVs."""

from reports.render import CSV_FILES, INDEX, render_html, write_csvs, write_report

__all__ = ["CSV_FILES", "INDEX", "render_html", "write_csvs", "write_report"]
