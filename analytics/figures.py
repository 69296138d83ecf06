"""Figures of the report's tables: matplotlib (Agg backend, no display needed) with seaborn styling.

Each ``plot_*`` function takes the DataFrame of the table of the same name and
returns a matplotlib Figure (or None when the table is empty); :func:`to_png`
renders a figure to PNG bytes and closes it. Bar charts show the top rows only
(``top``); the CSV/Parquet tables hold every row.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import matplotlib

matplotlib.use("Agg")  # headless; must precede pyplot

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import FuncFormatter, PercentFormatter  # noqa: E402

from darkpool.contracts import ALERT_BLOCK_CLUSTER, ALERT_DARK_SHARE_SURGE, ALERT_KINDS, ALERT_VENUE_CONCENTRATION  # noqa: E402

TYPE_COLORS = {"ATS": "#1f4e79", "SDP": "#6a9fd4", "EXCHANGE": "#c0504d"}
DARK_COLOR, LIT_COLOR = "#1f4e79", "#c0504d"
DPI = 100
ALERT_COLORS = {ALERT_DARK_SHARE_SURGE: "#1f4e79", ALERT_BLOCK_CLUSTER: "#e08a00", ALERT_VENUE_CONCENTRATION: "#c0504d"}


def _style() -> None:
    sns.set_theme(style="whitegrid", context="notebook", font_scale=0.9)


def _figure(width: float = 9.0, height: float = 4.5) -> tuple[Figure, plt.Axes]:
    _style()
    fig, ax = plt.subplots(figsize=(width, height), dpi=DPI)
    return fig, ax


def _utc_naive(times: pd.Series) -> pd.Series:
    """Window starts as naive UTC times (matplotlib plots tz-aware series through a deprecated path)."""
    return times.dt.tz_convert(None) if getattr(times.dt, "tz", None) is not None else times


def break_gaps(df: pd.DataFrame, time_column: str = "window_start") -> pd.DataFrame:
    """Insert an all-NaN row after each gap longer than 3x the usual step, so lines break overnight.

    Returns a copy with ``time_column`` as naive UTC.
    """
    data = df.assign(**{time_column: _utc_naive(df[time_column])}).reset_index(drop=True)
    if len(data) < 3:
        return data
    step = data[time_column].diff()
    gaps = step > 3 * step.median()
    if not gaps.any():
        return data
    fillers = data.loc[gaps, [time_column]].copy()
    fillers[time_column] = fillers[time_column] - step.median()
    return pd.concat([data, fillers]).sort_values(time_column, kind="stable").reset_index(drop=True)


def to_png(fig: Figure) -> bytes:
    """PNG bytes of a figure (tight layout); the figure is closed."""
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=DPI)
    plt.close(fig)
    return buffer.getvalue()


def plot_venue_ranking(df: pd.DataFrame, top: int = 25) -> Figure | None:
    """Notional per venue (horizontal bars), coloured by venue type."""
    if df.empty:
        return None
    data = df.nlargest(top, "notional").sort_values("notional")
    fig, ax = _figure(9, max(3.0, 0.28 * len(data) + 1.2))
    colors = [TYPE_COLORS.get(t, "#888888") for t in data["venue_type"]]
    ax.barh(data["venue"], data["notional"], color=colors)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _p: f"${x / 1e6:,.0f}M"))
    ax.set_xlabel("notional")
    ax.set_title("Venue ranking by notional")
    ax.legend(handles=[Patch(color=color, label=venue_type) for venue_type, color in TYPE_COLORS.items()],
              loc="lower right")
    return fig


def plot_dark_lit_over_time(df: pd.DataFrame) -> Figure | None:
    """Dark share of volume per window, with the lit remainder shaded."""
    data = df.dropna(subset=["dark_share"])
    if data.empty:
        return None
    data = break_gaps(data)
    fig, ax = _figure(9, 3.8)
    x = data["window_start"]
    ax.fill_between(x, 0, data["dark_share"], color=DARK_COLOR, alpha=0.8, label="dark (ATS + SDP)", lw=0)
    ax.fill_between(x, data["dark_share"], 1, color=LIT_COLOR, alpha=0.35, label="lit", lw=0)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_ylim(0, 1)
    ax.set_ylabel("share of volume")
    ax.set_xlabel("window start (UTC)")
    ax.set_title("Dark vs lit share of volume per window")
    ax.legend(loc="upper right")
    fig.autofmt_xdate()
    return fig


def plot_symbol_ranking(df: pd.DataFrame, top: int = 30) -> Figure | None:
    """Dark share per symbol (top by dark share)."""
    data = df.dropna(subset=["dark_share"]).head(top).iloc[::-1]
    if data.empty:
        return None
    fig, ax = _figure(9, max(3.0, 0.26 * len(data) + 1.2))
    ax.barh(data["symbol"], data["dark_share"], color=DARK_COLOR)
    ax.xaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_xlabel("dark share of volume")
    ax.set_title("Symbols ranked by dark share")
    return fig


def plot_trade_size(df: pd.DataFrame, top: int = 20) -> Figure | None:
    """Average trade size on dark vs lit venues, for ALL and the most active symbols."""
    if df.empty:
        return None
    data = df.assign(volume=df["dark_quantity"].fillna(0) + df["lit_quantity"].fillna(0))
    all_row = data[data["symbol"] == "ALL"]
    rest = data[data["symbol"] != "ALL"].nlargest(top, "volume")
    data = pd.concat([all_row, rest])
    long = data.melt(id_vars="symbol", value_vars=["dark_avg_trade_size", "lit_avg_trade_size"],
                     var_name="side", value_name="shares per trade")
    long["side"] = long["side"].map({"dark_avg_trade_size": "dark", "lit_avg_trade_size": "lit"})
    fig, ax = _figure(9, 4.0)
    sns.barplot(data=long, x="symbol", y="shares per trade", hue="side", ax=ax,
                palette={"dark": DARK_COLOR, "lit": LIT_COLOR})
    ax.set_title("Average trade size, dark vs lit")
    ax.set_xlabel("")
    ax.tick_params(axis="x", rotation=60)
    return fig


def plot_block_activity(df: pd.DataFrame, top: int = 20) -> Figure | None:
    """Block trades per symbol, split into dark and lit."""
    data = df[df["symbol"] != "ALL"].nlargest(top, "block_count").iloc[::-1]
    if data.empty or data["block_count"].sum() == 0:
        return None
    fig, ax = _figure(9, max(3.0, 0.26 * len(data) + 1.2))
    ax.barh(data["symbol"], data["dark_block_count"], color=DARK_COLOR, label="dark")
    ax.barh(data["symbol"], data["lit_block_count"], left=data["dark_block_count"], color=LIT_COLOR, label="lit")
    ax.set_xlabel("block trades (>= 10,000 sh or >= $200k)")
    ax.set_title("Block activity by symbol")
    ax.legend(loc="lower right")
    return fig


def plot_hhi_over_time(df: pd.DataFrame) -> Figure | None:
    """Mean and volume-weighted venue HHI per window, with the min-max range across symbols."""
    data = df.dropna(subset=["mean_hhi"])
    if data.empty:
        return None
    data = break_gaps(data)
    fig, ax = _figure(9, 3.8)
    x = data["window_start"]
    ax.fill_between(x, data["min_hhi"], data["max_hhi"], color="#999999", alpha=0.25, label="min-max over symbols")
    ax.plot(x, data["mean_hhi"], color="#1f4e79", label="mean")
    ax.plot(x, data["weighted_hhi"], color="#e08a00", label="volume-weighted")
    ax.set_ylabel("HHI (0-10,000)")
    ax.set_xlabel("window start (UTC)")
    ax.set_title("Venue concentration (HHI) over time")
    ax.legend(loc="upper right")
    fig.autofmt_xdate()
    return fig


def plot_hhi_by_symbol(df: pd.DataFrame, top: int = 30) -> Figure | None:
    """HHI of each symbol's venue shares over the period."""
    data = df.dropna(subset=["period_hhi"]).head(top).iloc[::-1]
    if data.empty:
        return None
    fig, ax = _figure(9, max(3.0, 0.26 * len(data) + 1.2))
    ax.barh(data["symbol"], data["period_hhi"], color="#1f4e79")
    ax.set_xlabel("HHI of venue shares over the period (0-10,000)")
    ax.set_title("Venue concentration by symbol")
    return fig


def plot_alerts_over_time(df: pd.DataFrame) -> Figure | None:
    """Alerts per period of window start (``period_minutes`` wide), stacked bars by kind.

    ``df`` is :func:`analytics.tables.alert_timeline`'s frame (period_start, period_minutes, kind, alerts).
    """
    if df.empty or df["alerts"].sum() == 0:
        return None
    minutes = int(df["period_minutes"].iloc[0])
    grid = df.assign(period_start=_utc_naive(df["period_start"])).pivot_table(
        index="period_start", columns="kind", values="alerts", aggfunc="sum", fill_value=0)
    kinds = [k for k in ALERT_KINDS if k in grid.columns] + sorted(set(grid.columns) - set(ALERT_KINDS))
    fig, ax = _figure(9, 3.8)
    bottom = pd.Series(0, index=grid.index)
    width = pd.Timedelta(minutes=minutes) * 0.9
    for kind in kinds:
        ax.bar(grid.index, grid[kind], width=width, bottom=bottom, align="edge",
               color=ALERT_COLORS.get(kind, "#888888"), label=kind)
        bottom = bottom + grid[kind]
    ax.set_ylabel("alerts")
    ax.set_xlabel("window start (UTC)")
    ax.set_title(f"Alerts per {'hour' if minutes == 60 else f'{minutes} minutes'} by kind")
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the bars, never over them
    fig.autofmt_xdate()
    return fig


def _latest_week(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["week"] == df["week"].max()]


def plot_finra_venue_share(df: pd.DataFrame, top_symbols: int = 15, top_venues: int = 12) -> Figure | None:
    """Heatmap of ATS venue shares per symbol for the latest FINRA week."""
    if df.empty:
        return None
    data = _latest_week(df)
    symbols = data.groupby("symbol")["share_quantity"].sum().nlargest(top_symbols).index
    venues = data.groupby("mpid")["share_quantity"].sum().nlargest(top_venues).index
    grid = (data[data["symbol"].isin(symbols) & data["mpid"].isin(venues)]
            .pivot_table(index="symbol", columns="mpid", values="venue_share", aggfunc="sum", fill_value=0.0)
            .reindex(index=symbols, columns=venues, fill_value=0.0))
    fig, ax = _figure(9, max(3.0, 0.32 * len(grid) + 1.5))
    sns.heatmap(grid * 100, annot=True, fmt=".0f", cmap="Blues", cbar_kws={"label": "% of ATS volume"}, ax=ax)
    ax.set_title(f"FINRA: ATS share of each symbol's ATS volume, week of {data['week'].max()}")
    ax.set_xlabel("ATS (MPID)")
    ax.set_ylabel("")
    return fig


def plot_finra_venue_trade_size(df: pd.DataFrame, top: int = 20) -> Figure | None:
    """Average trade size per ATS for the latest FINRA week."""
    if df.empty:
        return None
    data = _latest_week(df).nlargest(top, "share_quantity").iloc[::-1]
    fig, ax = _figure(9, max(3.0, 0.26 * len(data) + 1.2))
    ax.barh(data["mpid"], data["avg_trade_size"], color=DARK_COLOR)
    ax.set_xlabel("shares per trade")
    ax.set_title(f"FINRA: average trade size per ATS, week of {data['week'].max()}")
    return fig


def plot_finra_concentration(df: pd.DataFrame, top: int = 20) -> Figure | None:
    """HHI of ATS shares per symbol (most active symbols) for the latest FINRA week."""
    if df.empty:
        return None
    data = _latest_week(df).nlargest(top, "share_quantity").iloc[::-1]
    fig, ax = _figure(9, max(3.0, 0.26 * len(data) + 1.2))
    ax.barh(data["symbol"], data["hhi"], color="#1f4e79")
    ax.set_xlabel("HHI of ATS shares (0-10,000)")
    ax.set_title(f"FINRA: ATS concentration per symbol, week of {data['week'].max()}")
    return fig


def plot_finra_comparison(df: pd.DataFrame, top: int = 20) -> Figure | None:
    """Pipeline vs FINRA venue shares of dark volume, side by side."""
    if df.empty:
        return None
    data = df.assign(order=df[["pipeline_share", "finra_share"]].max(axis=1)).nlargest(top, "order")
    long = data.melt(id_vars="venue", value_vars=["pipeline_share", "finra_share"], var_name="source",
                     value_name="share")
    long["source"] = long["source"].map({"pipeline_share": "pipeline", "finra_share": "FINRA"})
    fig, ax = _figure(9, max(3.0, 0.35 * len(data) + 1.2))
    sns.barplot(data=long, y="venue", x="share", hue="source", ax=ax,
                palette={"pipeline": DARK_COLOR, "FINRA": "#e08a00"})
    ax.xaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_xlabel("share of dark volume")
    ax.set_ylabel("")
    ax.set_title("Venue shares: pipeline vs FINRA")
    return fig


# table name -> plot function; the report draws a figure for each table present (from the table, or from the
# frame the report passes for it: the alerts over time from their finer timeline)
FIGURES: dict[str, Callable[[pd.DataFrame], Figure | None]] = {
    "venue_ranking": plot_venue_ranking,
    "dark_lit_over_time": plot_dark_lit_over_time,
    "symbol_ranking": plot_symbol_ranking,
    "trade_size": plot_trade_size,
    "block_activity": plot_block_activity,
    "hhi_over_time": plot_hhi_over_time,
    "hhi_by_symbol": plot_hhi_by_symbol,
    "alerts_over_time": plot_alerts_over_time,  # drawn from analytics.tables.alert_timeline's frame
    "finra_venue_share": plot_finra_venue_share,
    "finra_venue_trade_size": plot_finra_venue_trade_size,
    "finra_concentration": plot_finra_concentration,
    "finra_comparison": plot_finra_comparison,
}
