"""Pictures without Grafana: the live status page of ``serve`` and the HTML report of ``run``."""

from loadsvc.web.page import ASSETS, asset, live_page, report_page

__all__ = ["ASSETS", "asset", "live_page", "report_page"]
