"""The venue registry loader: shipped registry, user files that extend or replace it, and their errors."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from darkpool import contracts, venues
from darkpool.config import load_settings
from darkpool.errors import DarkpoolError

HEADER = "mpid,name,operator,venue_type,data_center,latitude,longitude"
SEED_ROWS = (
    "DARK1,Seed Dark Pool 1,Seed Broker,ATS,Secaucus NJ,40.7776,-74.0724",
    "DARK2,Seed Dark Pool 2,Seed Broker,ATS,Carteret NJ,40.5779,-74.2285",
    "LIT,Seed Lit Exchange,Seed Exchange,EXCHANGE,Mahwah NJ,41.0887,-74.1438",
)


def write_registry(tmp_path: Path, *rows: str, header: str = HEADER, name: str = "venues.csv") -> Path:
    path = tmp_path / name
    path.write_text("\n".join((header, *rows)) + "\n", encoding="utf-8")
    return path


@pytest.fixture(autouse=True)
def _no_user_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DARKPOOL_VENUES_FILE", "DARKPOOL_VENUES_MODE"):
        monkeypatch.setenv(name, "")  # recorded, so whatever a test (or the CLI) sets is undone
        monkeypatch.delenv(name)


def use_registry(monkeypatch: pytest.MonkeyPatch, path: Path | str, mode: str | None = None) -> None:
    monkeypatch.setenv("DARKPOOL_VENUES_FILE", str(path))
    if mode is not None:
        monkeypatch.setenv("DARKPOOL_VENUES_MODE", mode)


def test_the_shipped_registry_is_active_by_default() -> None:
    shipped = venues.shipped_venues()
    assert len(shipped) == 23
    assert contracts.load_venues() == shipped
    assert contracts.venue_type_of("CDRG") == "SDP" and contracts.venue_type_of("DARK1") is None
    assert {v.venue_type for v in shipped.values()} == set(contracts.VENUE_TYPES)
    assert all(v.is_dark == (v.venue_type in contracts.DARK_VENUE_TYPES) for v in shipped.values())


def test_a_user_file_extends_the_shipped_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use_registry(monkeypatch, write_registry(tmp_path, *SEED_ROWS))
    active = contracts.load_venues()
    assert list(active) == [*venues.shipped_venues(), "DARK1", "DARK2", "LIT"]
    assert active["DARK1"] == contracts.Venue("DARK1", "Seed Dark Pool 1", "Seed Broker", "ATS", "Secaucus NJ",
                                              40.7776, -74.0724)
    assert active["DARK2"].is_dark and not active["LIT"].is_dark
    assert contracts.venue_type_of("LIT") == "EXCHANGE"
    assert active["XNAS"] == venues.shipped_venues()["XNAS"]
    assert load_settings().venues_mode == "extend"


def test_a_user_row_with_a_shipped_mpid_overrides_it_in_place(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    use_registry(monkeypatch, write_registry(
        tmp_path, "IEXG,IEX (moved),IEX Group,EXCHANGE,Chicago IL,41.88,-87.63", SEED_ROWS[0]))
    active = contracts.load_venues()
    shipped = venues.shipped_venues()
    assert list(active) == [*shipped, "DARK1"]  # the override keeps its place
    assert active["IEXG"].data_center == "Chicago IL" and active["IEXG"].latitude == 41.88
    assert shipped["IEXG"].data_center != "Chicago IL"  # the shipped registry itself is untouched


def test_replace_mode_makes_the_user_file_the_whole_registry(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    use_registry(monkeypatch, write_registry(tmp_path, *SEED_ROWS), mode="replace")
    assert list(contracts.load_venues()) == ["DARK1", "DARK2", "LIT"]
    assert contracts.venue_type_of("XNAS") is None
    assert load_settings().venues_file.endswith("venues.csv") and load_settings().venues_mode == "replace"


def test_columns_in_any_order_extra_columns_blank_lines_and_lower_case_types(tmp_path: Path) -> None:
    path = write_registry(
        tmp_path, "", "40.1,-74.2,X1,ats,Name,Op,DC,ignored", "",
        header="latitude,longitude,mpid,venue_type,name,operator,data_center,notes")
    assert venues.read_registry_file(path) == {
        "X1": contracts.Venue("X1", "Name", "Op", "ATS", "DC", 40.1, -74.2)}


@pytest.mark.parametrize(("rows", "header", "line", "message"), [
    ((SEED_ROWS[0],), "mpid,name,operator,venue_type,data_center,latitude", 1, "missing column(s) longitude"),
    ((SEED_ROWS[0], "DARK3,Bad,Op,DARK,DC,40.0,-74.0"), HEADER, 3, "venue DARK3: venue_type 'DARK' is not one of"),
    ((SEED_ROWS[0], SEED_ROWS[1], "DARK3,Bad,Op,ATS,DC,north,-74.0"), HEADER, 4, "latitude 'north' is not a number"),
    (("DARK3,Bad,Op,ATS,DC,91.5,-74.0",), HEADER, 2, "latitude '91.5' is outside [-90, 90]"),
    (("DARK3,Bad,Op,ATS,DC,40.0,-190",), HEADER, 2, "longitude '-190' is outside [-180, 180]"),
    (("DARK3,Bad,Op,ATS,DC,40.0,nan",), HEADER, 2, "longitude 'nan' is outside"),
    ((SEED_ROWS[0], " ,No MPID,Op,ATS,DC,40.0,-74.0"), HEADER, 3, "empty mpid"),
    ((SEED_ROWS[0], "DAR K,Bad,Op,ATS,DC,40.0,-74.0"), HEADER, 3, "mpid 'DAR K' may not contain spaces"),
    ((SEED_ROWS[0], SEED_ROWS[2], SEED_ROWS[0]), HEADER, 4, "duplicate mpid DARK1 (first on line 2)"),
    (("DARK3,Bad,Op,ATS,DC,40.0",), HEADER, 2, "6 values for 7 columns"),
])
def test_an_invalid_file_names_the_file_and_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 rows: tuple[str, ...], header: str, line: int, message: str) -> None:
    path = write_registry(tmp_path, *rows, header=header)
    with pytest.raises(DarkpoolError, match=re.escape(f"venue registry {path}, line {line}: {message}")):
        venues.read_registry_file(path)
    use_registry(monkeypatch, path)
    with pytest.raises(DarkpoolError, match=re.escape(f"line {line}: {message}")):
        contracts.load_venues()  # the active registry fails the same way, never half-loaded


def test_missing_or_empty_files_and_bad_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(DarkpoolError, match="no such file"):
        venues.read_registry_file(tmp_path / "absent.csv")
    (tmp_path / "empty.csv").write_text("", encoding="utf-8")
    with pytest.raises(DarkpoolError, match=r"empty.csv, line 1: the file is empty"):
        venues.read_registry_file(tmp_path / "empty.csv")
    header_only = write_registry(tmp_path, name="header.csv")
    assert venues.read_registry_file(header_only) == {}
    use_registry(monkeypatch, header_only)
    assert contracts.load_venues() == venues.shipped_venues()  # extending by nothing is fine
    use_registry(monkeypatch, header_only, mode="replace")
    with pytest.raises(DarkpoolError, match="empty and would replace every shipped venue"):
        contracts.load_venues()
    use_registry(monkeypatch, header_only, mode="merge")
    with pytest.raises(DarkpoolError, match="venues mode 'merge' is not one of extend, replace"):
        contracts.load_venues()
    monkeypatch.delenv("DARKPOOL_VENUES_FILE")
    monkeypatch.setenv("DARKPOOL_VENUES_MODE", "replace")
    with pytest.raises(DarkpoolError, match="'replace' needs a venue registry file"):
        contracts.load_venues()


def test_the_pipeline_config_carries_the_registry_of_its_flags_or_settings(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.options import PipelineConfig, parse_pipeline_args, registry_args

    path = write_registry(tmp_path, *SEED_ROWS)
    config, beam_args = parse_pipeline_args(["--venues", str(path), "--venues-mode", "replace", "--runner=X"])
    assert [v.mpid for v in config.venues] == ["DARK1", "DARK2", "LIT"] and beam_args == ["--runner=X"]
    assert config.venue_mpids == {"DARK1", "DARK2", "LIT"}
    assert config.venue_types == {"DARK1": "ATS", "DARK2": "ATS", "LIT": "EXCHANGE"}
    assert len(parse_pipeline_args([])[0].venues) == 23 and len(PipelineConfig().venues) == 23
    use_registry(monkeypatch, path)  # the settings (environment) are the flags' defaults
    assert {"DARK1", "XNAS"} <= parse_pipeline_args([])[0].venue_mpids
    assert {"DARK1", "XNAS"} <= PipelineConfig().venue_mpids
    # `darkpool run` records the registry in a Flink job's argv (absolute path), unless given there
    monkeypatch.chdir(tmp_path)
    assert registry_args("venues.csv", "extend", ["--source=kafka"]) == [
        f"--venues={path.resolve()}", "--venues-mode=extend"]
    assert registry_args("venues.csv", "extend", ["--venues=other.csv", "--venues-mode", "replace"]) == []
    assert registry_args("", "extend", []) == []
    bad = write_registry(tmp_path, "DARK9,Bad,Op,POOL,DC,40,-74", name="bad.csv")
    with pytest.raises(SystemExit):
        parse_pipeline_args(["--venues", str(bad)])


def test_the_cli_option_sets_the_registry_for_every_command_and_its_children(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from console.cli import main

    monkeypatch.chdir(tmp_path)
    write_registry(tmp_path, *SEED_ROWS)
    assert main(["--venues", "venues.csv", "--venues-mode", "replace", "venues", "--json"]) == 0
    listed = capsys.readouterr().out
    assert [v["mpid"] for v in json.loads(listed)] == ["DARK1", "DARK2", "LIT"]
    # exported (absolute path) before dispatch, so the processes a command starts inherit it
    child = subprocess.run(
        [sys.executable, "-c", "from darkpool.contracts import load_venues; print(','.join(load_venues()))"],
        capture_output=True, text=True, check=True, cwd="/")
    assert child.stdout.strip() == "DARK1,DARK2,LIT"

    write_registry(tmp_path, SEED_ROWS[0], "DARK2,Two,Op,ATS,DC,40.5,-74.2,extra", name="bad.csv")
    assert main(["--venues", "bad.csv", "venues"]) == 1
    assert f"venue registry {tmp_path / 'bad.csv'}, line 3: 8 values for 7 columns" in capsys.readouterr().err


def tape_venues(records) -> dict[str, int]:
    """venue -> share volume of a generated tape's records."""
    volume: dict[str, int] = {}
    for record in records:
        trade = json.loads(record.value)
        volume[trade["venue"]] = volume.get(trade["venue"], 0) + trade["quantity"]
    return volume


def test_the_synthetic_feed_prints_on_the_venues_of_the_active_registry(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import datetime as dt

    from feed.generator import FeedConfig, generate_tape
    from feed.universe import default_market

    config = FeedConfig(seed=5, session_trades=20_000, session_date=dt.date(2026, 11, 24))
    use_registry(monkeypatch, write_registry(tmp_path, *SEED_ROWS))  # extend: 23 + 3 venues
    market = default_market()
    assert market.venues == tuple(contracts.load_venues())
    assert np.allclose(market.volume_share.sum(axis=1), 1.0)
    assert np.all(market.volume_share[:, [market.venues.index(m) for m in ("DARK1", "DARK2", "LIT")]] > 0)
    volume = tape_venues(generate_tape(config))
    assert {"DARK1", "DARK2", "LIT", "CDRG", "XNAS"} <= set(volume) <= set(contracts.load_venues())

    use_registry(monkeypatch, write_registry(tmp_path, *SEED_ROWS, name="seed.csv"), mode="replace")
    market = default_market()
    assert market.venues == ("DARK1", "DARK2", "LIT") and np.allclose(market.volume_share.sum(axis=1), 1.0)
    dark_share = float(market.dark_share.mean())
    assert 0.3 < dark_share < 0.6  # the symbols' dark share goes to DARK1/DARK2, the rest to LIT
    volume = tape_venues(generate_tape(config))
    assert set(volume) == {"DARK1", "DARK2", "LIT"}

    # a registry without any lit venue: the whole tape prints dark (no NaN shares)
    use_registry(monkeypatch, write_registry(tmp_path, *SEED_ROWS[:2], name="dark.csv"), mode="replace")
    market = default_market()
    assert np.allclose(market.volume_share.sum(axis=1), 1.0) and np.allclose(market.dark_share, 1.0)
    assert set(tape_venues(generate_tape(config))) == {"DARK1", "DARK2"}


def test_injected_unknown_venues_are_never_venues_of_the_active_registry(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from feed.generator import UNKNOWN_VENUES, malformed_value, unknown_venues

    trade = {"trade_id": "t", "event_time": "2026-11-24T14:30:00.000Z", "symbol": "AAPL", "venue": "CDRG",
             "price": 1.0, "quantity": 1, "side": "B"}

    def injected() -> set[str]:
        return {json.loads(malformed_value("unknown_venue", trade, d))["venue"] for d in range(10)}

    assert injected() == set(UNKNOWN_VENUES) and "DARK1" in UNKNOWN_VENUES
    use_registry(monkeypatch, write_registry(tmp_path, *SEED_ROWS))
    assert "DARK1" not in unknown_venues() and injected() == set(UNKNOWN_VENUES) - {"DARK1"}
    rows = [f"{m},Declared,Op,ATS,DC,40,-74" for m in UNKNOWN_VENUES]
    use_registry(monkeypatch, write_registry(tmp_path, *rows, name="all.csv"))
    assert injected() == {"XXXX1"}
    assert not injected() & set(contracts.load_venues())


def test_analytics_names_and_types_venues_from_the_active_registry(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from analytics.dataset import connect

    use_registry(monkeypatch, write_registry(
        tmp_path, *SEED_ROWS, "XNAS,Nasdaq (user),Nasdaq Inc.,EXCHANGE,Carteret NJ,40.5779,-74.2285"))
    rows = connect().execute("SELECT mpid, name, registry_type FROM venues ORDER BY mpid").fetchall()
    by_mpid = {mpid: (name, kind) for mpid, name, kind in rows}
    assert len(rows) == 26
    assert by_mpid["DARK1"] == ("Seed Dark Pool 1", "ATS") and by_mpid["LIT"] == ("Seed Lit Exchange", "EXCHANGE")
    assert by_mpid["XNAS"] == ("Nasdaq (user)", "EXCHANGE")


def test_serving_lists_and_filters_the_venues_of_the_active_registry(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from serving import create_app

    use_registry(monkeypatch, write_registry(tmp_path, *SEED_ROWS), mode="replace")
    client = create_app({"BOOTSTRAP_SERVERS": "127.0.0.1:1"}).test_client()  # no consumer: reference data only
    listed = client.get("/api/v1/venues").get_json()["venues"]
    assert listed == [
        {"mpid": "DARK1", "name": "Seed Dark Pool 1", "operator": "Seed Broker", "venue_type": "ATS",
         "data_center": "Secaucus NJ", "latitude": 40.7776, "longitude": -74.0724, "is_dark": True},
        {"mpid": "DARK2", "name": "Seed Dark Pool 2", "operator": "Seed Broker", "venue_type": "ATS",
         "data_center": "Carteret NJ", "latitude": 40.5779, "longitude": -74.2285, "is_dark": True},
        {"mpid": "LIT", "name": "Seed Lit Exchange", "operator": "Seed Exchange", "venue_type": "EXCHANGE",
         "data_center": "Mahwah NJ", "latitude": 41.0887, "longitude": -74.1438, "is_dark": False},
    ]
    assert client.get("/api/v1/windows/latest?venue=DARK2").status_code == 200
    missing = client.get("/api/v1/windows/latest?venue=XNAS")  # replaced: no longer a registry venue
    assert missing.status_code == 404 and "not in the venue registry" in missing.get_json()["error"]["message"]
