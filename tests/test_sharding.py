"""The work-unit hash: stable everywhere, even over many SIDs, disjoint and covering."""

from __future__ import annotations

import random
import subprocess
import sys
from collections import Counter

import pytest

from studio_exporter.sharding import NO_SHARDING, Shard, shard_of

ACCOUNT = "AC" + "0" * 31 + "1"
FLOW = "FW" + "0" * 31 + "1"


def random_units(count: int, seed: int = 17) -> list[tuple[str, str]]:
    """(account, flow) pairs as Twilio writes them: a few accounts, many flows each."""
    rng = random.Random(seed)
    accounts = [f"AC{rng.getrandbits(128):032x}" for _ in range(20)]
    return [(rng.choice(accounts), f"FW{rng.getrandbits(128):032x}") for _ in range(count)]


def test_the_rule_is_the_first_8_bytes_of_sha256_big_endian() -> None:
    # sha256("AC0…01/FW0…01") starts 7291b159ea789f39: any change of the rule would move
    # every deployed replica's units, so it is pinned here.
    assert shard_of(ACCOUNT, FLOW, 2**64) == 0x7291B159EA789F39
    assert shard_of(ACCOUNT, FLOW, 2) == 1


def test_the_same_in_processes_with_other_hash_seeds() -> None:
    code = (
        "from studio_exporter.sharding import shard_of;"
        f"print(shard_of({ACCOUNT!r}, {FLOW!r}, 1000003))"
    )
    answers = {
        subprocess.run(
            [sys.executable, "-c", code],
            env={"PYTHONHASHSEED": seed, "PATH": ""},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        for seed in ("1", "2", "3")
    }
    assert answers == {str(shard_of(ACCOUNT, FLOW, 1000003))}


def test_the_account_is_part_of_the_unit() -> None:
    # The same flow SID under other accounts (never the case at Twilio, but nothing else
    # ties a unit to its account) lands on different shards.
    accounts = [f"AC{n:032x}" for n in range(64)]
    assert len({shard_of(account, FLOW, 4) for account in accounts}) == 4


@pytest.mark.parametrize("total", [pytest.param(m, id=f"M={m}") for m in (2, 3, 4, 5, 8)])
def test_units_spread_evenly(total: int) -> None:
    units = random_units(20_000)
    counts = Counter(shard_of(account, flow, total) for account, flow in units)
    mean = len(units) / total
    assert sorted(counts) == list(range(total))
    # A fair hash stays within a few standard deviations (about sqrt(mean) = 60..100 here).
    assert all(abs(count - mean) < 0.05 * mean for count in counts.values()), counts


@pytest.mark.parametrize("total", [pytest.param(m, id=f"M={m}") for m in range(1, 6)])
def test_every_unit_has_exactly_one_owner(total: int) -> None:
    shards = [Shard(index, total) for index in range(total)]
    for account, flow in random_units(2_000):
        owners = [shard.index for shard in shards if shard.owns(account, flow)]
        assert owners == [shard_of(account, flow, total)]


def test_no_sharding_owns_everything() -> None:
    assert not NO_SHARDING.splits
    assert all(NO_SHARDING.owns(account, flow) for account, flow in random_units(100))
    assert Shard(0, 1) == NO_SHARDING


@pytest.mark.parametrize(
    ("index", "total"),
    [
        pytest.param(0, 0, id="no-shards"),
        pytest.param(2, 2, id="index-equals-total"),
        pytest.param(-1, 2, id="negative-index"),
    ],
)
def test_impossible_shards_are_refused(index: int, total: int) -> None:
    with pytest.raises(ValueError, match="shard"):
        Shard(index, total)


def test_shard_of_refuses_zero_shards() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        shard_of(ACCOUNT, FLOW, 0)
