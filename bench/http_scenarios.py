"""Scenarios against the running services: order creation (closed and open loop), peak RSS, and
the async request-reply round trip; baselines are the hello world and a raw `nc.request`.

Every HTTP number comes from the same load generator (`bench.loadgen`, a process of its own),
pointed at the Order Service or at the hello world. Rounds alternate which goes first, so a
slow drift of the shared machine does not favour one side.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import nats
import nats.errors
from nats.aio.client import Client as Nats

from bench.floor import ORDERS_STREAM, PRODUCTS_STREAM
from bench.stack import (
    ADMIN_TOKEN,
    LOG_DIR,
    REPO_ROOT,
    Services,
    cpu_seconds,
    cpu_used,
    nats_messages,
    outbox_pending,
    per_request,
    python_module,
    redis_calls,
)
from bench.stats import Result, median, percentile

ORDER_PATH = "/api/v1/orders"
CONNECTIONS = 64
OPEN_LOOP_RPS = 200.0
QUIET_TIMEOUT_S = 90.0
RESPONDER_SUBJECT = "bench.details"
FLOOR_STREAMS = (ORDERS_STREAM, PRODUCTS_STREAM)


@dataclass
class HttpConfig:
    rounds: int = 3
    duration_s: float = 5.0
    p99_duration_s: float = 8.0
    warmup_s: float = 1.0
    request_reply_count: int = 200


@dataclass
class HttpBench:
    services: Services
    session: aiohttp.ClientSession
    nc: Nats
    product_ids: list[str]
    config: HttpConfig
    bodies_file: Path = field(default_factory=lambda: LOG_DIR / "orders.json")
    log: Callable[[str], None] = print
    infra_pids: dict[str, int | None] = field(default_factory=dict)
    nats_monitor_url: str | None = None
    """Redis and NATS: their CPU counts to the project's side (the hello world uses neither)."""

    def write_bodies(self, count: int = 500) -> None:
        """Orders of two distinct products each, spread over the seeded catalog and 20 users."""
        ids = self.product_ids
        bodies = [
            {
                "userId": f"bench-user-{i % 20}",
                "items": [
                    {"productId": ids[i % len(ids)], "quantity": 1},
                    {"productId": ids[(i + 17) % len(ids)], "quantity": 2},
                ],
            }
            for i in range(count)
        ]
        self.bodies_file.write_text(json.dumps(bodies))

    async def loadgen(self, base_url: str, *args: str, duration_s: float) -> dict[str, Any]:
        argv = [
            "-m",
            "bench.loadgen",
            "--url",
            base_url + ORDER_PATH,
            "--bodies",
            str(self.bodies_file),
            "--duration",
            str(duration_s),
            "--warmup",
            str(self.config.warmup_s),
            *args,
        ]
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            *argv,
            cwd=REPO_ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), duration_s + self.config.warmup_s + 60)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise RuntimeError("loadgen did not finish in time") from None
        if proc.returncode != 0:
            raise RuntimeError(f"loadgen failed ({proc.returncode}): {err.decode()[-2000:]}")
        report: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
        return report

    async def backlog(self) -> int:
        """Events stored but not yet consumed and acked, plus both services' outbox backlogs."""
        jsm = self.nc.jsm()
        total = 0
        for stream in ("ORDER_EVENTS", "PRODUCT_EVENTS", *FLOOR_STREAMS):
            try:
                consumers = await jsm.consumers_info(stream)
            except nats.errors.Error:
                continue
            total += sum((c.num_pending or 0) + (c.num_ack_pending or 0) for c in consumers)
        for url in (self.services.order_url, self.services.product_url):
            total += await outbox_pending(self.session, url) or 0
        return total

    async def wait_quiet(self) -> dict[str, float]:
        """Until the asynchronous work a run left (outbox, order.created reservations, their product
        events) is done, so it does not weigh on the next measurement. Bounded."""
        started = time.monotonic()
        first = await self.backlog()
        remaining = first
        while remaining > 0 and time.monotonic() - started < QUIET_TIMEOUT_S:
            await asyncio.sleep(0.25)
            remaining = await self.backlog()
        waited = time.monotonic() - started
        if remaining:
            self.log(f"    backlog not drained after {waited:.0f}s: {remaining} left")
        return {"backlog": first, "drain_s": round(waited, 2), "left": remaining}

    async def alternate(
        self,
        project: Callable[[], Awaitable[dict[str, Any]]],
        baseline: Callable[[], Awaitable[dict[str, Any]]],
        label: str,
        rounds: int | None = None,
        floor: Callable[[], Awaitable[dict[str, Any]]] | None = None,
    ) -> list[dict[str, Any]]:
        """Each round runs every side once; which goes first turns from round to round."""
        results = []
        sides = [("project", project), ("baseline", baseline)]
        if floor is not None:
            sides.append(("floor", floor))
        for number in range(rounds or self.config.rounds):
            pair: dict[str, Any] = {}
            turn = number % len(sides)
            for side, run in sides[turn:] + sides[:turn]:
                pair[side] = await run()
            self.log(f"  {label} round {number + 1}: {_brief(pair)}")
            results.append(pair)
        return results

    async def measured(self, side: str, *args: str, duration_s: float) -> dict[str, Any]:
        """One loadgen run, plus the CPU the measured processes spent on it per answered request.

        The project's side counts both services, Redis and NATS, until the asynchronous work
        the run caused (outbox, reservations, product events) is done; the baseline's the
        hello world."""
        services = self.services
        assert services.order is not None
        assert services.product is not None
        assert services.hello is not None
        if side == "project":
            url = services.order_url
            pids = {"order": services.order.pid, "product": services.product.pid, **self.infra_pids}
        elif side == "floor":
            assert services.floor_front is not None
            assert services.floor_upstream is not None
            url = services.floor_url
            pids = {
                "front": services.floor_front.pid,
                "upstream": services.floor_upstream.pid,
                **self.infra_pids,
            }
        else:
            url, pids = services.hello_url, {"hello": services.hello.pid}
        before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        if side != "baseline":
            calls_before = await redis_calls(services.redis_url)
            messages_before = nats_messages(self.nats_monitor_url)
        report = await self.loadgen(url, *args, duration_s=duration_s)
        answered = report.get("all_completed") or 0
        if side != "baseline":
            report["after"] = await self.wait_quiet()
            if answered:
                calls = await redis_calls(services.redis_url)
                report["redis_cmds_per_req"] = per_request(calls_before, calls, answered)
                messages = nats_messages(self.nats_monitor_url)
                if messages and messages_before:
                    report["nats_msgs_per_req"] = {
                        "in": round((messages[0] - messages_before[0]) / answered, 2),
                        "out": round((messages[1] - messages_before[1]) / answered, 2),
                    }
        per_process = {}
        for name, pid in pids.items():
            used = cpu_used([pid], [before[name]])
            if used is not None and answered:
                per_process[name] = round(used * 1000 / answered, 3)
        if len(per_process) == len(pids):
            report["cpu_ms_per_req"] = round(sum(per_process.values()), 3)
            report["cpu_ms_per_req_by_process"] = per_process
        return report

    # ------------------------------------------------------------------ scenarios
    async def order_create(self) -> tuple[Result, Result]:
        """order_create_rps and rss_mb: 64 connections, closed loop."""
        closed = ("--mode", "closed", "--connections", str(CONNECTIONS))
        duration = self.config.duration_s

        async def project() -> dict[str, Any]:
            return await self.measured("project", *closed, duration_s=duration)

        async def baseline() -> dict[str, Any]:
            return await self.measured("baseline", *closed, duration_s=duration)

        async def floor() -> dict[str, Any]:
            return await self.measured("floor", *closed, duration_s=duration)

        rounds = await self.alternate(project, baseline, "order_create_rps", floor=floor)
        order = self.services.order
        assert order is not None
        hwm = order.vm_hwm_mb()
        rps = _http_result(
            "order_create_rps",
            "req/s",
            rounds,
            "rps",
            "ratio >= 0.25",
            f"{CONNECTIONS} connections, closed loop; median 2xx answers/s over rounds; "
            + _cpu_split(rounds)
            + _fanout(rounds),
        )
        rss = Result(
            "rss_mb",
            "MiB",
            hwm,
            None,
            "value <= 150",
            note="VmHWM of the order-service process after the order_create_rps rounds",
        )
        return rps, rss

    async def order_p99(self) -> Result:
        """order_create_p99_ms: open loop at a fixed 200 requests/s, latency from the schedule."""
        open_loop = (
            "--mode",
            "open",
            "--rate",
            str(OPEN_LOOP_RPS),
            "--connections",
            str(CONNECTIONS),
        )
        duration = self.config.p99_duration_s

        async def project() -> dict[str, Any]:
            return await self.measured("project", *open_loop, duration_s=duration)

        async def baseline() -> dict[str, Any]:
            return await self.measured("baseline", *open_loop, duration_s=duration)

        async def floor() -> dict[str, Any]:
            return await self.measured("floor", *open_loop, duration_s=duration)

        rounds = await self.alternate(project, baseline, "order_create_p99_ms", floor=floor)
        return _http_result(
            "order_create_p99_ms",
            "ms",
            rounds,
            "p99_ms",
            "ratio <= 3",
            f"open loop {OPEN_LOOP_RPS:.0f} req/s offered; median of the rounds' p99; " + _cpu_split(rounds),
        )

    async def request_reply(self) -> Result:
        """request_reply_p50: RefreshProductNow over HTTP (its own `elapsedMs`, source event) vs
        a raw `nc.request` to a trivial responder in another process."""
        responder = python_module(
            "responder", "bench.responder", ["--url", self.services.nats_url, "--subject", RESPONDER_SUBJECT]
        )
        responder.start()
        try:
            await _wait_log_line(responder.log_path, "ready", responder.alive)
            count = self.config.request_reply_count
            headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
            payload = _request_payload()

            async def project() -> dict[str, Any]:
                elapsed: list[float] = []
                errors: dict[str, int] = {}
                for i in range(count + 10):
                    pid = self.product_ids[i % len(self.product_ids)]
                    url = f"{self.services.order_url}/admin/products/{pid}/refresh"
                    async with self.session.post(url, headers=headers) as response:
                        body = await response.json() if response.status == 200 else {}
                    source = body.get("source", f"http_{response.status}")
                    if i < 10:
                        continue  # warm-up
                    if source == "event":
                        elapsed.append(float(body["elapsedMs"]))
                    else:
                        errors[source] = errors.get(source, 0) + 1
                return _latency_report(elapsed, errors)

            async def baseline() -> dict[str, Any]:
                elapsed: list[float] = []
                errors: dict[str, int] = {}
                for i in range(count + 10):
                    started = time.perf_counter()
                    try:
                        await self.nc.request(RESPONDER_SUBJECT, payload, timeout=2)
                    except nats.errors.Error as error:
                        errors[type(error).__name__] = errors.get(type(error).__name__, 0) + 1
                        continue
                    if i >= 10:
                        elapsed.append((time.perf_counter() - started) * 1000)
                return _latency_report(elapsed, errors)

            rounds = await self.alternate(project, baseline, "request_reply_p50")
        finally:
            responder.stop()
        return _http_result(
            "request_reply_p50",
            "ms",
            rounds,
            "p50_ms",
            "ratio <= 2.0",
            f"{count} sequential requests a round; project: elapsedMs of POST /admin/products/{{id}}/refresh "
            "(source event, measured inside the Order Service); baseline: nc.request timed in the bench",
        )


def _latency_report(elapsed_ms: list[float], errors: dict[str, int]) -> dict[str, Any]:
    ordered = sorted(elapsed_ms)
    return {
        "ok": len(ordered),
        "errors": sum(errors.values()),
        "error_kinds": errors,
        "p50_ms": statistics.median(ordered) if ordered else None,
        "p99_ms": percentile(ordered, 99),
    }


def _request_payload() -> bytes:
    """About the size of a product.details_requested envelope."""
    request_id = str(uuid.uuid4())
    return json.dumps(
        {
            "id": str(uuid.uuid4()),
            "type": "product.details_requested",
            "source": "order-service",
            "dataVersion": "1.0",
            "timestamp": "2026-01-01T00:00:00Z",
            "correlationId": request_id,
            "data": {
                "productId": str(uuid.uuid4()),
                "requestId": request_id,
                "callbackEvent": "product.details_provided.bench",
            },
        }
    ).encode()


def _says(path: Path, text: str) -> bool:
    return path.exists() and text in path.read_text(errors="replace")


async def _wait_log_line(path: Path, text: str, alive: Callable[[], bool], timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if _says(path, text):
            return
        if not alive():
            raise RuntimeError(f"process logging to {path} exited before saying {text!r}")
        await asyncio.sleep(0.05)
    raise RuntimeError(f"{path} did not say {text!r} within {timeout_s}s")


def _http_result(
    name: str, unit: str, rounds: list[dict[str, Any]], key: str, target: str, note: str
) -> Result:
    project = [r["project"].get(key) for r in rounds]
    baseline = [r["baseline"].get(key) for r in rounds]
    floor = [r["floor"].get(key) for r in rounds if "floor" in r]
    project_errors = sum(r["project"].get("errors", 0) for r in rounds)
    baseline_errors = sum(r["baseline"].get("errors", 0) for r in rounds)
    floor_errors = sum(r["floor"].get("errors", 0) for r in rounds if "floor" in r)
    if project_errors or baseline_errors or floor_errors:
        note += f"; errors: project {project_errors}, baseline {baseline_errors}, raw floor {floor_errors}"
    return Result(
        name,
        unit,
        median(project),
        median(baseline),
        target,
        errors=project_errors + baseline_errors,
        rounds=rounds,
        note=note,
        floor=median(floor) if floor else None,
    )


def _brief(pair: dict[str, Any]) -> str:
    parts = []
    for side in ("project", "baseline", "floor"):
        if side not in pair:
            continue
        report = pair[side]
        keys = ("rps", "p50_ms", "p99_ms", "errors", "cpu_ms_per_req")
        shown = [f"{key}={_short(report[key])}" for key in keys if key in report]
        if "after" in report:
            shown.append(f"drain={report['after']['drain_s']}s")
        parts.append(f"{side} " + " ".join(shown))
    return " | ".join(parts)


def _cpu_split(rounds: list[dict[str, Any]]) -> str:
    """`CPU ms per request: order 3.1, product 3.9, ... (total 8.6); hello 0.11` (medians)."""
    parts = []
    for side in ("project", "baseline", "floor"):
        split: dict[str, list[float]] = {}
        for pair in rounds:
            for name, ms in pair.get(side, {}).get("cpu_ms_per_req_by_process", {}).items():
                split.setdefault(name, []).append(ms)
        medians = {name: statistics.median(values) for name, values in split.items()}
        if medians:
            shown = ", ".join(f"{name} {ms:.2f}" for name, ms in medians.items())
            shown = f"{shown} (total {sum(medians.values()):.2f})" if len(medians) > 1 else shown
            parts.append(f"raw floor {shown}" if side == "floor" else shown)
    return "CPU ms per request: " + "; ".join(parts) if parts else ""


def _fanout(rounds: list[dict[str, Any]]) -> str:
    """What one order costs the infrastructure, follow-up work included (the last round's)."""
    last = rounds[-1]["project"]
    parts = []
    if "redis_cmds_per_req" in last:
        commands = dict(last["redis_cmds_per_req"])
        total = commands.pop("total")
        shown = ", ".join(f"{name} {n}" for name, n in commands.items())
        parts.append(f"Redis commands per order {total} (scripts' own included: {shown})")
    if "nats_msgs_per_req" in last:
        messages = last["nats_msgs_per_req"]
        parts.append(f"NATS messages per order: {messages['in']} in, {messages['out']} out")
    return "; " + "; ".join(parts) if parts else ""


def _short(value: Any) -> Any:
    return round(value, 2) if isinstance(value, float) else value


async def connect_nats(url: str) -> Nats:
    return await nats.connect(url, name="bench", connect_timeout=5, max_reconnect_attempts=3)
