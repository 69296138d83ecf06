"""Response shapes shared by the routes (``serving.api``) and their OpenAPI description
(``serving.openapi``): both import this module, neither imports the other's routes."""

from __future__ import annotations

# the fields of one point of /api/v1/symbols/{symbol}/timeseries (a liquidity pane, trimmed)
TIMESERIES_POINT_FIELDS = ("window_start", "window_end", "trade_count", "share_quantity", "notional", "vwap",
                           "avg_trade_size", "block_count", "block_quantity")
