"""Both services as real processes (the console scripts), as an operator would run them."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp
import attrs

from tests.integration.servers import free_port

SCRIPTS = Path(sys.executable).parent
START_TIMEOUT_S = 20.0


@attrs.define
class ServiceProcess:
    """`order-service serve` or `product-service serve` with its own port and log file."""

    script: str
    env: dict[str, str]
    port: int
    process: subprocess.Popen[bytes] | None = None
    log_path: Path = attrs.field(factory=lambda: Path(tempfile.mkstemp(suffix=".log")[1]))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self.spawn()
        await self.wait_ready()

    def spawn(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(  # noqa: S603 - our own console script
                [str(SCRIPTS / self.script), "serve"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    async def wait_ready(self) -> None:
        began = time.monotonic()
        async with aiohttp.ClientSession() as session:
            while time.monotonic() - began < START_TIMEOUT_S:
                if self.process is not None and self.process.poll() is not None:
                    break
                try:
                    async with session.get(f"{self.url}/ready") as response:
                        if response.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
        raise AssertionError(f"{self.script} not ready on {self.url}:\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        self._signal(signal.SIGTERM)
        if self.process is not None:
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    def kill(self) -> None:
        self._signal(signal.SIGKILL)
        if self.process is not None:
            self.process.wait(timeout=10)

    def _signal(self, sig: signal.Signals) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, sig)


def service_env(base: Mapping[str, str], **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith(("_URL", "_PORT", "_HOST"))}
    env.update(base)
    env.update(settings)
    return env


def order_service(base: Mapping[str, str], instance: str) -> ServiceProcess:
    port = free_port()
    env = service_env(base, ORDER_SERVICE_PORT=str(port), INSTANCE_ID=instance)
    return ServiceProcess("order-service", env, port)


def product_service(base: Mapping[str, str]) -> ServiceProcess:
    port = free_port()
    env = service_env(base, PRODUCT_SERVICE_PORT=str(port), INSTANCE_ID="products")
    return ServiceProcess("product-service", env, port)


async def call(
    session: aiohttp.ClientSession, method: str, url: str, body: Any = None, token: str | None = None
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with session.request(method, url, json=body, headers=headers) as response:
        return response.status, await response.json(content_type=None)
