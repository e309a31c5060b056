"""Rendering only: the HTML page from declared sections, summary.md, text, plots, exports."""
