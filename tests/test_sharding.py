"""The work-unit hash: stable everywhere, even over many SIDs, disjoint and covering."""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from studio_exporter.core.sharding import NO_SHARDING, Shard, shard_of
from studio_exporter.simulator import Simulator, SimulatorConfig
from tests.exporter_process import ExporterProcess, exporter_command, scrape
from tests.otlp_receiver import OtlpReceiver, running_receiver
from tests.test_accounts import account_registry
from tests.truthcheck import expected_span_count, metric_mismatches, samples, together

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
        "from studio_exporter.core.sharding import shard_of;"
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


@pytest.fixture
def simulator() -> Iterator[Simulator]:
    config = SimulatorConfig(seed=17, history_executions=40, history_days=1, subaccounts=3)
    with Simulator(config) as sim:
        yield sim


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with running_receiver() as running:
        yield running


def units(registry: CollectorRegistry, name: str) -> set[tuple[str, str]]:
    """The (account, flow) units with a non-zero sample of ``name``."""
    return {
        (labels["account_sid"], labels["flow_sid"])
        for labels, value in samples(registry, name)
        if value
    }


@pytest.mark.integration
def test_two_replicas_split_every_account_and_sum_to_the_truth(
    simulator: Simulator, receiver: OtlpReceiver, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "TWILIO_ACCOUNT_SID": simulator.account_sid,
        "TWILIO_AUTH_TOKEN": simulator.auth_token,
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": receiver.endpoint,
        "STUDIO_EXPORTER_TOTAL_SHARDS": "2",
    }
    common = [
        "--include-subaccounts", "--twilio-base-url", simulator.url,
        "--web.listen-address", "127.0.0.1:0", "--lookback", "3d", "--poll-interval", "1s",
    ]  # fmt: skip
    # The shard as a flag, the total from the environment: both ways are read.
    replicas = [
        ExporterProcess(
            [*common, "--shard", str(shard), "--state-dir", str(tmp_path / f"shard-{shard}")],
            env,
            tmp_path / f"shard-{shard}.log",
        ).start()
        for shard in (0, 1)
    ]
    accounts = [account.sid for account in simulator.accounts]
    truths = {sid: simulator.truth(sid) for sid in accounts}
    try:
        urls = [replica.web_url() for replica in replicas]
        deadline = time.monotonic() + 90
        while True:
            registries = [scrape(url)[1] for url in urls]
            summed = together(*registries)
            problems = {
                sid: metric_mismatches(account_registry(summed, sid), truths[sid])
                for sid in accounts
            }
            if not any(problems.values()) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        receiver.wait_for_spans(sum(map(expected_span_count, truths.values())), 30)
    finally:
        for replica in replicas:
            assert replica.terminate() == 0, replica.own_log()[-3000:]
    spans = list(receiver.spans)  # all of them, after both replicas flushed and stopped
    assert problems == {sid: [] for sid in accounts}
    every_flow = {
        (account.sid, flow_sid)
        for account in simulator.accounts
        for flow_sid in account.traffic.flow_sids
    }
    followed = [units(registry, "twilio_studio_flow_info") for registry in registries]
    assert followed[0] | followed[1] == every_flow
    assert followed[0].isdisjoint(followed[1])
    for shard, registry in enumerate(registries):
        assert {shard_of(*unit, 2) for unit in followed[shard]} == {shard}
        assert {account for account, _ in followed[shard]} == set(accounts), "each has some"
        info = samples(registry, "twilio_studio_exporter_shard_info")
        assert info == [({"shard": str(shard), "total_shards": "2"}, 1.0)]
    for name in ("twilio_studio_executions_started_total", "twilio_studio_steps_total"):
        exported = [units(registry, name) for registry in registries]
        assert exported[0].isdisjoint(exported[1]), name
    # Every span once: a flow's executions are exported by one replica only.
    assert len(spans) == sum(map(expected_span_count, truths.values()))
    assert len({(span.trace_id, span.span_id) for span in spans}) == len(spans)


@pytest.mark.integration
def test_backfill_shards_add_up_to_every_execution(simulator: Simulator, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "TWILIO_ACCOUNT_SID": simulator.account_sid,
        "TWILIO_AUTH_TOKEN": simulator.auth_token,
        "OTEL_SDK_DISABLED": "true",
    }
    reports = []
    for shard in (0, 1):
        argv = [
            *exporter_command("backfill"),
            "--include-subaccounts", "--twilio-base-url", simulator.url, "--since", "3d",
            "--shard", str(shard), "--total-shards", "2",
            "--state-dir", str(tmp_path / f"shard-{shard}"),
        ]  # fmt: skip
        done = subprocess.run(
            argv,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        found = re.search(r"backfill: (\d+) flows, (\d+) executions", done.stdout)
        assert found is not None, done.stdout
        reports.append((int(found.group(1)), int(found.group(2))))
    accounts = simulator.accounts
    flows = sum(len(account.traffic.flow_sids) for account in accounts)
    started = sum(
        flow["executions_started"]
        for account in accounts
        for flow in simulator.truth(account.sid)["flows"].values()
    )
    assert all(count for count, _ in reports), reports
    assert sum(count for count, _ in reports) == flows
    assert sum(executions for _, executions in reports) == started
