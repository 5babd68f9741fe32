"""What a reader looks at: the thesis's plots (``_plots``), particle outlines and the error anatomy
on the SEM image (``_overlay``), the summary tables (Table 8 per image, size statistics with
bootstrap intervals, the whole run pooled: ``_summary``) and the self-contained ``report.html``
(``_html``)."""

from ._html import html_table, result_warnings, write_report
from ._overlay import ANATOMY_COLOURS, anatomy_image, anatomy_rgb, overlay_image, overlay_rgb
from ._plots import (
    CORRELATION_COLUMNS,
    correlation_matrix,
    plot_area_violin,
    plot_correlation,
    plot_ecd_distribution,
    plot_envelopes,
    plot_envelopes_png,
    plot_feret_angle_kde,
    plot_run_overview,
)
from ._summary import PARTICLES_KINDS, SIZE_STATS, SUMMARY_COLUMNS, bootstrap_ci, pooled_statistics, summary_table

__all__ = [
    "SIZE_STATS",
    "SUMMARY_COLUMNS",
    "PARTICLES_KINDS",
    "bootstrap_ci",
    "summary_table",
    "pooled_statistics",
    "overlay_rgb",
    "overlay_image",
    "ANATOMY_COLOURS",
    "anatomy_rgb",
    "anatomy_image",
    "plot_area_violin",
    "plot_feret_angle_kde",
    "plot_correlation",
    "plot_ecd_distribution",
    "plot_run_overview",
    "plot_envelopes",
    "plot_envelopes_png",
    "correlation_matrix",
    "CORRELATION_COLUMNS",
    "html_table",
    "result_warnings",
    "write_report",
]
