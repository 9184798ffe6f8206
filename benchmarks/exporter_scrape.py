"""CPU cost of the Prometheus endpoint with 64 contexts.

Prints, for 64 contexts on the simulated backend, for each format (the text format
and OpenMetrics) with and without gzip:
- the CPU time of rendering one scrape (collecting the families, encoding them with
  prometheus-client, compressing);
- the damond process's CPU time per scrape served over HTTP on loopback (aiohttp,
  rendering, socket I/O), with the scraper in another process so that its CPU is
  not counted, over one kept-alive connection as Prometheus scrapes;
- what that is as a share of one core at a 15 s scrape interval (the target is at
  most 0.1 %);
- the CPU time the iteration observer adds to one context iteration.

The endpoint's reuse of a recent rendering is turned off, so every scrape renders.
The machine may be shared, so each figure is the best of a few runs.
Usage: python benchmarks/exporter_scrape.py [--contexts 64] [--scrapes 200] [--repeats 3]
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
import time
from collections.abc import Callable
from functools import partial

from damond.backend.simulated.backend import SimBackend
from damond.config import (
    ContextConfig,
    GoalConfig,
    MetricsConfig,
    SchemeConfig,
    Settings,
)
from damond.control.coordinator import Coordinator
from damond.control.status import ContextStatus
from damond.metrics.endpoint import MetricsEndpoint, negotiate
from damond.metrics.exporter import DaemonMetrics
from damond.runtime.logs import configure_logging
from damond.runtime.loop import ContextLoop

SCRAPER = """
import http.client, sys
port, n, accept, encoding = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
conn = http.client.HTTPConnection("127.0.0.1", port)
for _ in range(n):
    conn.request("GET", "/metrics", headers={"Accept": accept, "Accept-Encoding": encoding})
    response = conn.getresponse()
    body = response.read()
    assert response.status == 200 and len(body) > 1000, body[:100]
"""
SCRAPE_INTERVAL_S = 15.0
VARIANTS = (
    ("text", "text/plain;version=0.0.4", "identity"),
    ("text, gzip", "text/plain;version=0.0.4", "gzip"),
    ("OpenMetrics", "application/openmetrics-text;version=1.0.0", "identity"),
    ("OpenMetrics, gzip", "application/openmetrics-text;version=1.0.0", "gzip"),
)


def contexts(n: int) -> tuple[ContextConfig, ...]:
    return tuple(
        ContextConfig(
            name=f"ctx{i:02d}",
            node=i % 2,
            scheme=SchemeConfig(target_nid=1 - i % 2),
            goal=GoalConfig(metric="node_target_mem_bp", nid=i % 2, target_bp=5000),
        )
        for i in range(n)
    )


async def populated(n: int) -> tuple[DaemonMetrics, dict[str, ContextStatus], list[ContextLoop]]:
    settings = Settings(contexts=contexts(n))
    now = [0.0]
    backend = SimBackend(settings.simulation, settings.contexts, lambda: now[0])
    metrics = DaemonMetrics(backend, mqtt_enabled=True)
    coordinator = Coordinator(interval_s=1.0)
    loops = [ContextLoop(c, backend, coordinator, 1.0, [metrics]) for c in settings.contexts]
    await backend.open()
    for loop in loops:
        await loop.setup()
    for _ in range(5):
        now[0] += 1.0
        for loop in loops:
            await loop.step()
    return metrics, {loop.cfg.name: loop.status for loop in loops}, loops


def cpu_per_call_us(fn: Callable[[], object], calls: int) -> float:
    fn()
    start = time.process_time()
    for _ in range(calls):
        fn()
    return (time.process_time() - start) / calls * 1e6


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def run_scraper(port: int, scrapes: int, accept: str, encoding: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", SCRAPER, str(port), str(scrapes), accept, encoding
    )
    if await proc.wait() != 0:
        raise RuntimeError("the scraper failed")


def endpoint_for(
    metrics: DaemonMetrics, statuses: dict[str, ContextStatus], port: int
) -> MetricsEndpoint:
    endpoint = MetricsEndpoint(
        MetricsConfig(listen=f"127.0.0.1:{port}"), metrics, lambda: statuses, 1.0
    )
    endpoint.render_reuse_s = 0.0  # every scrape renders
    return endpoint


async def http_cpu_per_scrape_us(
    endpoint: MetricsEndpoint, port: int, scrapes: int, accept: str, encoding: str
) -> float:
    """This process's CPU per scrape while another process scrapes it over loopback."""
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(endpoint.serve())
        for _ in range(500):
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.01)
                continue
            writer.close()
            break
        await run_scraper(port, 5, accept, encoding)
        start = time.process_time()
        await run_scraper(port, scrapes, accept, encoding)
        cpu = time.process_time() - start
        task.cancel()
    return cpu / scrapes * 1e6


def share_of_a_core(cpu_us: float) -> str:
    return f"{cpu_us / 1e6 / SCRAPE_INTERVAL_S * 100:.3f} %"


async def main() -> None:
    configure_logging("warning", sys.stderr)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contexts", type=int, default=64)
    parser.add_argument("--scrapes", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3, help="report the best of these runs")
    args = parser.parse_args()
    metrics, statuses, loops = await populated(args.contexts)
    text = metrics.render(statuses)
    samples = sum(1 for line in text.splitlines() if not line.startswith(b"#"))
    print(f"contexts: {args.contexts}, damond samples per scrape: {samples}")
    print(f"share of one core: CPU per scrape / {SCRAPE_INTERVAL_S:.0f} s (target <= 0.1 %)")
    print(f"{'format':<20}{'bytes':>8}{'render ms':>11}{'HTTP ms':>9}{'share (HTTP)':>14}")
    port = free_port()
    endpoint = endpoint_for(metrics, statuses, port)
    for label, accept, encoding in VARIANTS:
        encoder, content_type = negotiate(accept)
        gzipped = encoding == "gzip"
        size = len(endpoint.render(encoder, content_type, gzipped))
        render_us = min(
            cpu_per_call_us(
                partial(endpoint.render, encoder, content_type, gzipped),
                max(20, args.scrapes // 4),
            )
            for _ in range(args.repeats)
        )
        http_us = min(
            [
                await http_cpu_per_scrape_us(endpoint, port, args.scrapes, accept, encoding)
                for _ in range(args.repeats)
            ]
        )
        print(
            f"{label:<20}{size:>8}{render_us / 1000:>11.2f}{http_us / 1000:>9.2f}"
            f"{share_of_a_core(http_us):>14}"
        )

    status = loops[0].status
    observe_us = min(
        cpu_per_call_us(lambda: metrics(status, 0.0012), 20_000) for _ in range(args.repeats)
    )
    print(f"observer (per context iteration): {observe_us:.2f} us CPU")


if __name__ == "__main__":
    asyncio.run(main())
