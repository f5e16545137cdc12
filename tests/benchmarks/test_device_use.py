"""The benchmarks' whole-process memory count and their search for the longest sequence that fits: the
arithmetic a GPU run relies on, checked here without one."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import bench_common as bc
import train_throughput as tt


class Card:
    """Which sequence lengths fit a budget, and every length the search tried."""

    def __init__(self, longest: int | None):
        self.longest, self.tried = longest, []

    def fits(self, seq: int) -> bool:
        self.tried.append(seq)
        return self.longest is not None and seq <= self.longest


@pytest.mark.parametrize("longest", [1024, 5120, 16384, 23552, 32768, 65536])
def test_the_search_finds_the_longest_fitting_sequence_to_its_step(longest):
    card = Card(longest)
    assert tt.longest_fitting(card.fits, start=16384, low=1024, high=65536, step=1024) == longest
    assert len(card.tried) <= 12  # each trial is a process that loads a 7B model
    assert len(set(card.tried)) == len(card.tried)


def test_the_search_says_none_when_even_the_shortest_does_not_fit():
    card = Card(None)
    assert tt.longest_fitting(card.fits, start=16384, low=1024, high=65536, step=1024) is None
    assert card.tried[-1] == 1024


def test_whole_use_is_the_idle_free_memory_less_the_free_memory_now():
    use = bc.DeviceUse(idle_free_mib=80_000.0, baseline_source="nvml")
    assert use.sample(free=(80_000 - 620) * bc.MIB, total=81_000 * bc.MIB) == 620
    assert use.sample(free=(80_000 - 7_000) * bc.MIB, total=81_000 * bc.MIB) == 7_000
    use.sample(free=(80_000 - 6_500) * bc.MIB, total=81_000 * bc.MIB)
    # at the end: 6,500 MiB used of which 5,500 reserved; the allocator had reserved 6,200 at its peak
    report = use.report({"process_device_mib": 6_500.0, "reserved_mib": 5_500.0, "max_reserved_mib": 6_200.0})
    assert report["sampled_peak_mib"] == 7_000 and report["outside_allocator_mib"] == 1_000
    assert report["reserved_peak_plus_outside_mib"] == 7_200 and report["whole_peak_mib"] == 7_200
    assert report["samples"] == 3


def test_without_a_baseline_the_card_counts_as_idle_before_the_process():
    use = bc.DeviceUse(idle_free_mib=None, baseline_source="none")
    assert use.sample(free=7_000 * bc.MIB, total=7_800 * bc.MIB) == 800


def test_the_fits_column_judges_the_whole_count_of_the_capped_run():
    assert tt.fits_budget({"status": "ok", "whole_peak_gib": 7.4}, 7.6) == "yes"
    assert tt.fits_budget({"status": "ok", "whole_peak_gib": 7.9}, 7.6) == "no"
    assert tt.fits_budget({"status": "oom", "whole_peak_gib": 8.1}, 7.6) == "OOM"
    assert tt.fits_budget({"status": "ok"}, 7.6) == "-" and tt.fits_budget(None, 7.6) == "-"
