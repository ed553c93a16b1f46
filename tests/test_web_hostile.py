"""Hostile clients against the exporter's web port, over real sockets, with a scraper watching.

The exporter runs as its own process (``studio-exporter run --mode push``) so that its memory is
its own. During each attack a scraper fetches ``/metrics`` (asking for gzip) and
``/health/live`` on fresh connections, and a sender delivers signed Event Streams batches; each
case reports how many scrapes succeeded and their p99 latency, the exporter's RSS growth, and
whether every event it acknowledged with a 200 was counted as accepted. The short form of every
attack runs in ``make test``; the long form (``-m slow``, ``make reliability``) writes the table
into ``docs/reliability.md``, which the README repeats.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import math
import multiprocessing
import multiprocessing.queues
import os
import random
import re
import select
import socket
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx
import pytest
from prometheus_client import CollectorRegistry

from studio_exporter.core.eventstreams import STEP_ENDED, sign_request
from studio_exporter.simulator import Simulator, SimulatorConfig
from studio_exporter.sources.push import (
    DEFAULT_WEBHOOK_PATH,
    MAX_NESTING_DEPTH,
    WebhookReceiver,
    nesting_depth,
)
from studio_exporter.store.sqlite import Store, state_file
from studio_exporter.web.server import Readiness, WebServer
from tests.exporter_process import ExporterProcess
from tests.report import replace_section
from tests.tls import self_signed_certificate

pytestmark = pytest.mark.integration

TOKEN = "hostile-suite-auth-token-0123456789"
#: How long each attack lasts: short in `make test`, long for the README's table.
SHORT_SECONDS = 2.0
FULL_SECONDS = 15.0
#: What "keeps answering" means: every scrape and probe answered, none slower than this.
ANSWER_WITHIN = 1.0
REPORT = Path(__file__).resolve().parent.parent / "docs" / "reliability.md"
SECTION = "hostile-clients"
FLOW = "FW" + "c" * 32
EXECUTIONS = [f"FN{index:032x}" for index in range(4)]


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


# -- the exporter under attack ------------------------------------------------------------------


@dataclass
class Target:
    """A running exporter and how to reach it."""

    process: ExporterProcess
    base_url: str
    verify: ssl.SSLContext | bool
    counter: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def host(self) -> str:
        return str(urlsplit(self.base_url).hostname)

    @property
    def port(self) -> int:
        return int(urlsplit(self.base_url).port or 0)

    def connect(self, timeout: float = 5.0) -> socket.socket:
        return socket.create_connection((self.host, self.port), timeout=timeout)

    def rss_bytes(self) -> int:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        found = re.search(r"VmRSS:\s+(\d+) kB", status)
        return int(found.group(1)) * 1024 if found else 0

    def next_event_ids(self, count: int) -> list[str]:
        with self.lock:
            start = self.counter["events"]
            self.counter["events"] += count
        # The attacker runs in a forked copy of this process: the pid keeps the ids apart.
        return [f"EV-{os.getpid()}-{start + offset}" for offset in range(count)]

    def delivery(self, events: int) -> bytes:
        return json.dumps(
            [step_event(event_id) for event_id in self.next_event_ids(events)]
        ).encode()

    def post_signed(
        self, client: httpx.Client, body: bytes, *, timeout: float = 5.0
    ) -> httpx.Response:
        url = self.base_url + DEFAULT_WEBHOOK_PATH
        request_url, signature = sign_request(TOKEN, url, body)
        return client.post(
            request_url,
            content=body,
            headers={"X-Twilio-Signature": signature, "Content-Type": "application/json"},
            timeout=timeout,
        )

    def accepted_total(self) -> float:
        text = httpx.get(self.base_url + "/metrics", verify=self.verify, timeout=10).text
        total = 0.0
        for line in text.splitlines():
            if line.startswith("twilio_studio_exporter_events_received_total{") and (
                'result="accepted"' in line or 'result="duplicate"' in line
            ):
                total += float(line.rsplit(" ", 1)[1])
        return total


def step_event(event_id: str) -> dict[str, object]:
    execution = random.choice(EXECUTIONS)
    return {
        "specversion": "1.0",
        "type": STEP_ENDED,
        "source": "/v2/Flows",
        "id": event_id,
        "datacontenttype": "application/json",
        "data": {
            "account_sid": "AC" + "a" * 32,
            "flow_sid": FLOW,
            "execution_sid": execution,
            "step_sid": "FT" + event_id.encode().hex()[-32:].rjust(32, "0"),
            "name": "Incoming Message",
            "transitioned_from": "Trigger",
            "transitioned_to": "ask",
            "parent_step_sid": None,
            "date_created": "2026-05-04T08:00:00.000Z",
        },
    }


@contextlib.contextmanager
def running_exporter(
    simulator: Simulator, tmp_path: Path, *, tls: bool = False, ipv6: bool = False
) -> Iterator[Target]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    state = tmp_path / "state"
    address = "[::]:0" if ipv6 else "127.0.0.1:0"
    args = [
        "--mode", "push",
        "--twilio-base-url", simulator.url,
        "--web.listen-address", address,
        "--state-dir", str(state),
        "--log.level", "info",
    ]  # fmt: skip
    verify: ssl.SSLContext | bool = True
    if tls:
        cert, key = self_signed_certificate(tmp_path)
        config = tmp_path / "web.yml"
        config.write_text(f"tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n")
        args += ["--web.config.file", str(config)]
        verify = ssl.create_default_context(cafile=str(cert))
    env = {
        **os.environ,
        "TWILIO_ACCOUNT_SID": simulator.account_sid,
        "TWILIO_AUTH_TOKEN": TOKEN,
    }
    process = ExporterProcess(args, env, tmp_path / "exporter.log").start()
    try:
        url = process.web_url(timeout=60)
        if ipv6:
            url = url.replace("127.0.0.1", "[::1]")
        yield Target(process, url, verify)
    finally:
        process.terminate()


# -- measuring while attacked ------------------------------------------------------------------


@dataclass
class Observed:
    scrapes_ok: int = 0
    scrapes: int = 0
    live_ok: int = 0
    lives: int = 0
    latencies: list[float] = field(default_factory=list)
    gzip_served: bool = True
    events_acknowledged: int = 0
    rss_before: int = 0
    rss_peak: int = 0
    failures: list[str] = field(default_factory=list)

    @property
    def p99(self) -> float:
        if not self.latencies:
            return math.nan
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)]

    @property
    def slowest(self) -> float:
        return max(self.latencies, default=math.nan)


def watch(target: Target, stop: Stop, observed: Observed) -> list[threading.Thread]:
    """The scraper, the honest sender and the RSS sampler, running until ``stop``."""

    def scraper() -> None:
        while not stop.is_set():
            for path in ("/metrics", "/health/live"):
                started = time.monotonic()
                try:
                    response = httpx.get(
                        target.base_url + path,
                        headers={"Accept-Encoding": "gzip"},
                        verify=target.verify,
                        timeout=5.0,
                    )
                    ok = response.status_code == 200
                    if path == "/metrics" and response.headers.get("content-encoding") != "gzip":
                        observed.gzip_served = False
                except httpx.HTTPError as error:
                    ok = False
                    observed.failures.append(f"{path}: {type(error).__name__}")
                elapsed = time.monotonic() - started
                observed.latencies.append(elapsed)
                if path == "/metrics":
                    observed.scrapes += 1
                    observed.scrapes_ok += ok
                else:
                    observed.lives += 1
                    observed.live_ok += ok
            stop.wait(0.05)

    def sender() -> None:
        with httpx.Client(verify=target.verify) as client:
            while not stop.is_set():
                body = target.delivery(10)
                with contextlib.suppress(httpx.HTTPError):
                    if target.post_signed(client, body).status_code == 200:
                        observed.events_acknowledged += 10
                stop.wait(0.1)

    def sampler() -> None:
        while not stop.is_set():
            with contextlib.suppress(OSError):
                observed.rss_peak = max(observed.rss_peak, target.rss_bytes())
            stop.wait(0.05)

    threads = [threading.Thread(target=work, daemon=True) for work in (scraper, sender, sampler)]
    for thread in threads:
        thread.start()
    return threads


# -- the attacks ---------------------------------------------------------------------------------

#: An attack runs until ``stop`` and returns what it did, for the table, plus the events the
#: exporter acknowledged to it (counted against the "accepted" metric).
Attack = Callable[[Target, "Stop"], tuple[str, int]]


class Stop(Protocol):
    """A threading or multiprocessing Event: the attack stops when it is set."""

    def is_set(self) -> bool: ...

    def wait(self, timeout: float | None = None) -> bool: ...


def hold_connections(
    target: Target,
    stop: Stop,
    count: int,
    feed: Callable[[socket.socket, bool], None],
) -> int:
    """Keep ``count`` connections open, calling ``feed(sock, fresh)`` on each every second;
    reopen the ones the server closes. Returns how many connections were opened in all."""
    opened = 0
    sockets: list[socket.socket | None] = [None] * count
    try:
        while not stop.is_set():
            for index in range(count):
                sock = sockets[index]
                try:
                    fresh = sock is None
                    if sock is None:
                        sock = target.connect(timeout=2)
                        sock.setblocking(False)
                        sockets[index] = sock
                        opened += 1
                    feed(sock, fresh)
                except (OSError, ValueError):
                    if sock is not None:
                        sock.close()
                    sockets[index] = None
                if stop.is_set():
                    break
            stop.wait(1.0)
    finally:
        for sock in sockets:
            if sock is not None:
                sock.close()
    return opened


def idle_tls_clients(target: Target, stop: Stop) -> tuple[str, int]:
    opened = hold_connections(target, stop, 100, lambda sock, fresh: None)
    return f"100 TCP connections that never send a ClientHello ({opened} opened)", 0


def slowloris(connections: int) -> Attack:
    def attack(target: Target, stop: Stop) -> tuple[str, int]:
        def feed(sock: socket.socket, fresh: bool) -> None:
            if fresh:
                sock.send(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
            else:
                sock.send(b"X-Slow: 1\r\n")  # one header line a second, never the end

        opened = hold_connections(target, stop, connections, feed)
        return f"{connections} connections, one header line a second ({opened} opened)", 0

    return attack


def fifty_megabyte_body(target: Target, stop: Stop) -> tuple[str, int]:
    declared = 50_000_000
    answers: Counter[int] = Counter()
    while not stop.is_set():
        with contextlib.suppress(OSError), target.connect() as sock:
            sock.sendall(
                f"POST {DEFAULT_WEBHOOK_PATH} HTTP/1.1\r\nHost: x\r\n"
                f"Content-Length: {declared}\r\nX-Twilio-Signature: x\r\n\r\n".encode()
            )
            # The answer must come before a single byte of the body is sent.
            answer = sock.recv(4096)
            answers[int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0] += 1
        stop.wait(0.02)
    assert set(answers) == {413}, f"answers to a 50 MB body: {dict(answers)}"
    return f"{answers[413]} requests declaring 50 MB: 413 before any body byte was sent", 0


def chunked_flood(target: Target, stop: Stop) -> tuple[str, int]:
    chunk = b"%x\r\n%s\r\n" % (65536, b"[" * 65536)
    answers: Counter[int] = Counter()
    sent_total = 0

    def one() -> None:
        nonlocal sent_total
        while not stop.is_set():
            sent = 0
            with contextlib.suppress(OSError), target.connect() as sock:
                sock.sendall(
                    # A signature on a URL without bodySHA256 cannot be judged before the
                    # body is read: the worst case, which makes the exporter read.
                    f"POST {DEFAULT_WEBHOOK_PATH} HTTP/1.1\r\nHost: x\r\n"
                    "X-Twilio-Signature: x\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
                )
                answer = b""
                with contextlib.suppress(OSError):
                    while sent < 50_000_000 and not stop.is_set():
                        sock.sendall(chunk)
                        sent += len(chunk)
                        # Stop at the server's answer, as a client that reads would.
                        if select.select([sock], [], [], 0)[0]:
                            answer = sock.recv(4096)
                            break
                answers[int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/") else 0] += 1
            sent_total += sent

    workers = [threading.Thread(target=one, daemon=True) for _ in range(8)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert set(answers) <= {0, 413}, f"answers to endless chunked bodies: {dict(answers)}"
    assert answers[413] > 0, "no chunked body was answered 413"
    return (
        f"8 senders of endless chunked bodies: {sum(answers.values())} cut off "
        f"({answers[413]} with 413); {sent_total / 1e6:.0f} MB written by the senders"
    ), 0


def deep_json(target: Target, stop: Stop) -> tuple[str, int]:
    body = b"[" * 200_000 + b"]" * 200_000
    answers: Counter[int] = Counter()
    with httpx.Client(verify=target.verify) as client:
        while not stop.is_set():
            with contextlib.suppress(httpx.HTTPError):
                answers[target.post_signed(client, body).status_code] += 1
    assert set(answers) == {400}, f"answers to deep JSON: {dict(answers)}"
    return f"{answers[400]} signed deliveries nested 200,000 deep: 400 each", 0


def thousand_events(target: Target, stop: Stop) -> tuple[str, int]:
    answers: Counter[int] = Counter()
    acknowledged = 0
    with httpx.Client(verify=target.verify) as client:
        while not stop.is_set():
            body = target.delivery(1000)
            with contextlib.suppress(httpx.HTTPError):
                status = target.post_signed(client, body, timeout=10).status_code
                answers[status] += 1
                if status == 200:
                    acknowledged += 1000
    assert answers[200] > 0, f"answers to 1,000-event deliveries: {dict(answers)}"
    return f"{answers[200]} signed deliveries of 1,000 events accepted", acknowledged


MALFORMED = [
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(64)),  # TLS to a plain port
    b"GET /metrics HTTP/9.9\r\n\r\n",
    b"GET /metrics\r\n\r\n",
    b"\r\n\r\n\r\n\r\n",
    b"POST /webhooks/event-streams HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
    b"POST /webhooks/event-streams HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
    b"GET /metrics HTTP/1.1\r\nHost: x\r\n" + b"X: y\r\n" * 500 + b"\r\n",
    b"GET /" + b"a" * 100_000 + b" HTTP/1.1\r\n\r\n",
    b"GET /metrics HTTP/1.1\r\nBad Header\r\n\r\n",
    b"GET /metrics HTTP/1.1\r\nX: \x00\x01\x02\r\n\r\n",
]


def malformed_http(target: Target, stop: Stop) -> tuple[str, int]:
    answers: Counter[int] = Counter()
    rng = random.Random(3)
    while not stop.is_set():
        data = rng.choice([*MALFORMED, rng.randbytes(rng.randrange(1, 4000))])
        with contextlib.suppress(OSError), target.connect(timeout=3) as sock:
            sock.sendall(data)
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_WR)
            answer = sock.recv(64)
            answers[int(answer[9:12]) if answer[9:12].isdigit() else 0] += 1
    served = sum(count for status, count in answers.items() if 200 <= status < 300)
    assert answers[500] == 0, f"answers to malformed HTTP: {dict(answers)}"
    return (
        f"{sum(answers.values())} malformed requests: "
        f"{sum(c for s, c in answers.items() if 400 <= s < 600)} 4xx/5xx, {served} 2xx, "
        f"{answers[0]} closed"
    ), 0


@dataclass(frozen=True)
class Case:
    name: str
    attack: Attack
    tls: bool = False
    ipv6: bool = False


CASES = [
    Case("idle TLS clients", idle_tls_clients, tls=True),
    Case("slowloris", slowloris(500)),
    Case("50 MB body", fifty_megabyte_body),
    Case("chunked flood", chunked_flood),
    Case("deep JSON", deep_json),
    Case("1,000 events per delivery", thousand_events),
    Case("malformed HTTP", malformed_http),
    Case("slowloris over IPv6 (dual-stack [::])", slowloris(500), ipv6=True),
]


@dataclass
class Outcome:
    case: str
    attack: str
    observed: Observed
    acknowledged: int
    accepted: float


def run_case(simulator: Simulator, case: Case, seconds: float, tmp_path: Path) -> Outcome:
    with running_exporter(simulator, tmp_path, tls=case.tls, ipv6=case.ipv6) as target:
        accepted_before = target.accepted_total()
        observed = Observed(rss_before=target.rss_bytes())
        # The attacker is a process of its own, so that its work does not slow the scraper
        # (they would share this interpreter's lock): the latencies are the exporter's.
        forked = multiprocessing.get_context("fork")
        stop = forked.Event()
        results: multiprocessing.queues.Queue[tuple[str, object]] = forked.Queue()
        attacker = forked.Process(target=_attack, args=(case.attack, target, stop, results))
        attacker.start()
        time.sleep(0.5)  # the attack is under way before the watching starts
        watchers = watch(target, stop, observed)
        time.sleep(seconds)
        stop.set()
        for thread in watchers:
            thread.join(timeout=30)
        kind, value = results.get(timeout=60)
        attacker.join(timeout=30)
        if kind == "error":
            raise AssertionError(f"{case.name}: {value}")
        assert isinstance(value, tuple)
        description, acknowledged = value
        acknowledged += observed.events_acknowledged
        # Every event answered 200 has been committed and counted before the answer.
        accepted = target.accepted_total() - accepted_before
        return Outcome(case.name, description, observed, acknowledged, accepted)


def _attack(
    attack: Attack, target: Target, stop: Stop, results: multiprocessing.queues.Queue[Any]
) -> None:
    try:
        results.put(("ok", attack(target, stop)))
    except BaseException as error:  # reported by the parent, not lost with this process
        results.put(("error", f"{type(error).__name__}: {error}"))


def check(outcome: Outcome) -> None:
    observed = outcome.observed
    assert observed.scrapes > 0
    assert observed.scrapes_ok == observed.scrapes, observed.failures[:5]
    assert observed.live_ok == observed.lives, observed.failures[:5]
    assert observed.slowest < ANSWER_WITHIN, f"slowest answer {observed.slowest:.3f} s"
    assert observed.gzip_served
    assert outcome.accepted == outcome.acknowledged, "an acknowledged event was not accepted"


@pytest.fixture(scope="module")
def simulator() -> Iterator[Simulator]:
    config = SimulatorConfig(seed=12, history_executions=5, history_days=1, auth_token=TOKEN)
    with Simulator(config) as sim:
        yield sim


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(
            case,
            id=case.name,
            marks=[pytest.mark.skipif(not ipv6_loopback(), reason="no IPv6 loopback")]
            if case.ipv6
            else [],
        )
        for case in CASES
    ],
)
def test_the_port_keeps_answering_under_attack(
    simulator: Simulator, case: Case, tmp_path: Path
) -> None:
    check(run_case(simulator, case, SHORT_SECONDS, tmp_path))


def test_nesting_depth_is_measured_without_recursion() -> None:
    assert nesting_depth(b'[{"data":{"a":[1]}}]') == 4
    assert nesting_depth(b'["[[[[", "\\"]]"]') == 1
    assert nesting_depth(b"[" * 1_000_000) == MAX_NESTING_DEPTH + 1


# -- the full form and the table ---------------------------------------------------------------


def markdown_table(outcomes: list[Outcome], seconds: float, command: str) -> str:
    lines = [
        "| Attack | What the attacker did | /metrics scrapes OK | p99 latency | Slowest "
        "| /health/live OK | RSS growth | Events acknowledged / accepted |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for o in outcomes:
        observed = o.observed
        growth = max(0, observed.rss_peak - observed.rss_before) / 1e6
        lines.append(
            f"| {o.case} | {o.attack} | {observed.scrapes_ok}/{observed.scrapes} "
            f"| {observed.p99 * 1000:.0f} ms | {observed.slowest * 1000:.0f} ms "
            f"| {observed.live_ok}/{observed.lives} | {growth:.1f} MB "
            f"| {o.acknowledged} / {o.accepted:.0f} |"
        )
    return "\n".join(
        [
            f"<!-- written by `{command}`; do not edit by hand -->",
            *lines,
            "",
            f"Each attack ran for {seconds:.0f} s against `studio-exporter run --mode push` as "
            "its own process, on a machine shared with other work. Meanwhile a scraper fetched "
            "`/metrics` (with `Accept-Encoding: gzip`, always answered gzipped) and "
            "`/health/live` on a fresh connection every 50 ms, and a sender delivered signed "
            "batches of 10 events every 100 ms. Latency covers both endpoints, connection set-up "
            "included. RSS growth is the exporter's peak resident memory during the attack "
            "minus its resident memory before. Events acknowledged are those the exporter "
            "answered 200 for; accepted is the growth of "
            '`twilio_studio_exporter_events_received_total{result=~"accepted|duplicate"}`: '
            "equal means no acknowledged event was lost.",
            "",
        ]
    )


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_full_attacks_write_the_table(simulator: Simulator, tmp_path: Path) -> None:
    outcomes = []
    for index, case in enumerate(CASES):
        if case.ipv6 and not ipv6_loopback():
            continue
        outcomes.append(run_case(simulator, case, FULL_SECONDS, tmp_path / f"case{index}"))
    table = markdown_table(outcomes, FULL_SECONDS, "make reliability")
    print("\n" + table)
    replace_section(REPORT, SECTION, table)
    for outcome in outcomes:
        check(outcome)


def test_gzip_payload_is_the_text_exposition(simulator: Simulator, tmp_path: Path) -> None:
    with running_exporter(simulator, tmp_path) as target:
        raw = httpx.get(
            target.base_url + "/metrics", headers={"Accept-Encoding": "gzip"}
        )  # httpx decodes it; check the wire too
        assert raw.headers["content-encoding"] == "gzip"
        with target.connect() as sock:
            sock.sendall(
                b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\n"
                b"Connection: close\r\n\r\n"
            )
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        body = data.partition(b"\r\n\r\n")[2]
        assert b"twilio_studio_exporter_build_info" in gzip.decompress(body)


def test_a_bad_signature_is_refused_before_the_body_is_read(tmp_path: Path) -> None:
    """Twilio signs the URL carrying bodySHA256: a wrong or missing signature is answered 403
    from the request head alone, so a sender without the auth token cannot make us read."""
    with Store.open(state_file(tmp_path)) as store:
        receiver = WebhookReceiver(store, TOKEN, metrics=CollectorRegistry())
        web = WebServer(
            "127.0.0.1", 0, CollectorRegistry(), lambda: Readiness(True, {}),
            {DEFAULT_WEBHOOK_PATH: receiver},
        )  # fmt: skip
        web.start()
        try:
            body = json.dumps([step_event("EV-signed-1")]).encode()
            url = f"{web.url}{DEFAULT_WEBHOOK_PATH}"
            signed_url, signature = sign_request(TOKEN, url, body)
            target = signed_url[len(web.url) :]

            def head(signature: str | None, length: int) -> bytes:
                lines = [f"POST {target} HTTP/1.1", f"Host: {urlsplit(web.url).netloc}"]
                lines.append(f"Content-Length: {length}")
                if signature is not None:
                    lines.append(f"X-Twilio-Signature: {signature}")
                return ("\r\n".join(lines) + "\r\n\r\n").encode()

            host, port = web.addresses[0]
            for refused in (None, "d3JvbmcK"):  # missing; wrong
                with socket.create_connection((host, port), timeout=5) as sock:
                    sock.sendall(head(refused, 500_000))  # no body byte follows
                    answer = sock.recv(4096)
                assert answer.startswith(b"HTTP/1.1 403 "), answer[:100]
                assert b"X-Twilio-Signature" in answer
            with socket.create_connection((host, port), timeout=5) as sock:
                sock.sendall(head(signature, len(body)) + body)
                answer = sock.recv(4096)
            assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
            assert [row.event_id for row in store.next_events(10)] == ["EV-signed-1"]
        finally:
            web.stop()
