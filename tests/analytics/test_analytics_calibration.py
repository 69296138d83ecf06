"""Calibration of the feed from a FINRA file: the synthetic tape reproduces the file's venue mix.

The test writes a FINRA weekly file, turns it into a Calibration with
darkpool.finra_file.calibration_from_file, generates a long replay tape with the
feed's generator (feed.generator.TapeGenerator, no Kafka needed) and measures,
per symbol, each venue's share of the tape's dark volume and its average trade
size.

Tolerances (stated): venue share within 2 percentage points of the file's;
average trade size within 15% of the file's. Trade sizes are heavy-tailed (blocks), so
the tape is long: 8 million prints (a few seconds, vectorised). Measured over
seeds 1-5 with the feed of 2026-11-25: at 2 million prints the worst venue
share was off by 1.2-2.6 pp (too noisy for 2 pp) and the worst average size by
8-16%; at 8 million by 0.6-1.1 pp and 4-6%.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from analytics_handmade import write_finra

from darkpool.finra_file import calibration_from_file

feed_generator = pytest.importorskip("feed.generator", reason="the feed package (feed/) is not in this checkout")

SHARE_TOLERANCE_PP = 2.0
SIZE_TOLERANCE = 0.15
TAPE_PRINTS = 8_000_000

# symbol -> MPID -> (weekly shares, weekly trades): a realistic spread of ATS sizes and shares
FILE_VOLUMES = {
    "AAPL": {"UBSA": (9_000_000, 45_000), "MSPL": (6_000_000, 33_000), "JPMX": (4_500_000, 26_000),
             "SGMT": (3_000_000, 19_000), "ICBX": (1_500_000, 5_000)},
    "MSFT": {"UBSA": (3_000_000, 15_000), "LATS": (2_500_000, 14_000), "INCR": (2_000_000, 15_000),
             "BIDS": (1_000_000, 500)},
    "XYZQ": {"JPMX": (800_000, 4_000), "LEVL": (400_000, 700), "MLIX": (300_000, 1_600)},
}


def _finra_rows() -> list[str]:
    return [f"NMS Tier 1|{symbol}|{symbol} Inc|ATS {mpid}|{mpid}|{shares}|{trades}|2026-11-16"
            for symbol, venues in FILE_VOLUMES.items() for mpid, (shares, trades) in venues.items()]


def test_calibration_from_file_reads_the_shares_and_sizes(tmp_path: Path) -> None:
    path = write_finra(tmp_path / "ats_20261109.txt", _finra_rows())
    calibration = calibration_from_file(path)
    assert set(calibration) == set(FILE_VOLUMES)
    aapl = calibration["AAPL"]
    assert aapl["UBSA"].share == pytest.approx(9_000_000 / 24_000_000)
    assert aapl["UBSA"].avg_trade_size == pytest.approx(200.0)
    assert calibration["MSFT"]["BIDS"].avg_trade_size == pytest.approx(2000.0)
    for profiles in calibration.values():
        assert sum(p.share for p in profiles.values()) == pytest.approx(1.0)


def test_an_unusable_row_does_not_change_the_calibration(tmp_path: Path) -> None:
    """FINRA's files end with a row without symbol (or MPID): it is left out, the rest calibrates as before."""
    clean = calibration_from_file(write_finra(tmp_path / "ats_20261109.txt", _finra_rows()))
    with_tail = calibration_from_file(write_finra(
        tmp_path / "tail_20261109.txt",
        [*_finra_rows(), "NMS Tier 1|||ATS UBSA|UBSA|1|1|2026-11-16", "NMS Tier 1|AAPL|AAPL Inc|ATS||5|1|2026-11-16"]))
    assert with_tail == clean


def test_feed_tape_follows_the_finra_file(tmp_path: Path) -> None:
    path = write_finra(tmp_path / "ats_20261109.txt", _finra_rows())
    calibration = calibration_from_file(path)
    config = feed_generator.FeedConfig(seed=11, calibration=calibration, session_trades=TAPE_PRINTS,
                                       batch_size=65_536)
    generator = feed_generator.TapeGenerator(config)
    symbols, venues = list(generator.market.symbols), list(generator.market.venues)
    n_s, n_v = len(symbols), len(venues)
    volume = np.zeros(n_s * n_v, dtype=np.float64)
    trades = np.zeros(n_s * n_v, dtype=np.int64)
    for batch in generator.replay_batches():
        cell = batch.sym * n_v + batch.venue
        volume += np.bincount(cell, weights=batch.qty.astype(np.float64), minlength=n_s * n_v)
        trades += np.bincount(cell, minlength=n_s * n_v)
    volume, trades = volume.reshape(n_s, n_v), trades.reshape(n_s, n_v)
    assert int(trades.sum()) == TAPE_PRINTS
    dark = generator.market.venue_is_dark
    failures = []
    for symbol, profiles in calibration.items():
        s = symbols.index(symbol)
        dark_volume = volume[s, dark].sum()
        # only the file's venues print dark volume for this symbol
        for v in np.flatnonzero(dark):
            if venues[v] not in profiles:
                assert volume[s, v] == 0, f"{symbol}: {venues[v]} is not in the file but printed volume"
        for mpid, profile in profiles.items():
            v = venues.index(mpid)
            share = volume[s, v] / dark_volume
            size = volume[s, v] / trades[s, v]
            if abs(share - profile.share) * 100 > SHARE_TOLERANCE_PP:
                failures.append(f"{symbol} {mpid}: share {share:.4f} vs file {profile.share:.4f}")
            if abs(size / profile.avg_trade_size - 1) > SIZE_TOLERANCE:
                failures.append(f"{symbol} {mpid}: avg size {size:.0f} vs file {profile.avg_trade_size:.0f}")
    assert not failures, "\n".join(failures)
