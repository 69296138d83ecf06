"""The demo's feed flags: history, and the scenarios' offsets counted from the feed's first print."""

from __future__ import annotations

from console.demo import DEMO_SCENARIOS, demo_feed_args
from feed.scenarios import parse_scenario


def test_scenario_offsets_count_from_the_history_start():
    args = demo_feed_args(15, scenarios=True)
    assert args[:2] == ["--history-minutes", "15"]
    specs = [args[i + 1] for i, a in enumerate(args) if a == "--scenario"]
    assert [s.split("@")[0] for s in specs] == [spec for spec, _, _ in DEMO_SCENARIOS]
    scenarios = [parse_scenario(s) for s in specs]
    assert [s.offset_seconds for s in scenarios] == [900 + 60 * m for _, m, _ in DEMO_SCENARIOS]
    cluster = scenarios[1]
    assert (cluster.name, cluster.blocks, cluster.block_shares) == ("block_cluster", 8, 200_000)


def test_no_history_for_a_running_job_and_no_scenarios_when_off():
    assert demo_feed_args(0, scenarios=False) == []
    assert [a for a in demo_feed_args(0, scenarios=True) if a.startswith("--history")] == []
    assert parse_scenario(demo_feed_args(0, scenarios=True)[1]).offset_seconds == 60 * DEMO_SCENARIOS[0][1]
