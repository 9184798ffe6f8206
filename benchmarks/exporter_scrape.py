"""CPU cost of the Prometheus exporter with 64 contexts.

Prints, for 64 contexts on the simulated backend:
- the CPU time of rendering one scrape (DaemonMetrics.render);
- the damond process's CPU time per scrape served over HTTP on loopback
  (request parsing, rendering, /proc/vmstat, socket I/O), with the scraper in
  another process so that its CPU is not counted, both over one kept-alive
  connection (what Prometheus does) and with a new connection per scrape;
- the CPU time the iteration observer adds to one context iteration;
- for comparison, prometheus-client's generate_latest on the same samples.

The machine may be shared, so each figure is the best of a few runs.
Usage: python benchmarks/exporter_scrape.py [--contexts 64] [--scrapes 500] [--repeats 3]
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from damond.backend.simulated.backend import SimBackend
from damond.config import (
    ContextConfig,
    GoalConfig,
    MetricsConfig,
    SchemeConfig,
    Settings,
)
from damond.control.arbiter import GoalArbiter
from damond.control.status import ContextStatus
from damond.metrics.endpoint import MetricsEndpoint
from damond.metrics.exporter import DaemonMetrics
from damond.runtime.logs import configure_logging
from damond.runtime.loop import ContextLoop

SCRAPER = """
import http.client, sys
port, n, reuse = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "keep-alive"
conn = None
for _ in range(n):
    if conn is None:
        conn = http.client.HTTPConnection("127.0.0.1", port)
    conn.request("GET", "/metrics")
    body = conn.getresponse().read()
    assert body.startswith(b"# HELP"), body[:100]
    if not reuse:
        conn.close()
        conn = None
"""


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
    arbiter = GoalArbiter(stale_after_s=3.0)
    loops = [ContextLoop(c, backend, arbiter, 1.0, [metrics]) for c in settings.contexts]
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


class Replay(Collector):
    """Our samples as prometheus-client metric families, to time generate_latest."""

    def __init__(self, text: str) -> None:
        self.families: list[Metric] = list(text_string_to_metric_families(text))

    def collect(self) -> list[Metric]:
        return self.families


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def run_scraper(port: int, scrapes: int, connection: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", SCRAPER, str(port), str(scrapes), connection
    )
    if await proc.wait() != 0:
        raise RuntimeError("the scraper failed")


async def http_cpu_per_scrape_us(
    metrics: DaemonMetrics, statuses: dict[str, ContextStatus], scrapes: int, connection: str
) -> float:
    """This process's CPU per scrape while another process scrapes it over loopback."""
    port = free_port()
    config = MetricsConfig(listen=f"127.0.0.1:{port}")
    endpoint = MetricsEndpoint(config, metrics, lambda: statuses, 1.0)
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
        await run_scraper(port, 10, connection)
        start = time.process_time()
        await run_scraper(port, scrapes, connection)
        cpu = time.process_time() - start
        task.cancel()
    return cpu / scrapes * 1e6


async def main() -> None:
    configure_logging("warning", sys.stderr)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contexts", type=int, default=64)
    parser.add_argument("--scrapes", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3, help="report the best of these runs")
    args = parser.parse_args()
    metrics, statuses, loops = await populated(args.contexts)
    text = metrics.render(statuses)
    samples = sum(1 for line in text.splitlines() if not line.startswith(b"#"))
    print(f"contexts: {args.contexts}, samples per scrape: {samples}, bytes: {len(text)}")

    render_us = min(
        cpu_per_call_us(lambda: metrics.render(statuses), args.scrapes) for _ in range(args.repeats)
    )
    print(f"render (DaemonMetrics.render):       {render_us / 1000:.3f} ms CPU per scrape")

    status = loops[0].status
    observe_us = min(
        cpu_per_call_us(lambda: metrics(status, 0.0012), 20_000) for _ in range(args.repeats)
    )
    print(f"observer (per context iteration):    {observe_us:.2f} us CPU")

    for connection in ("keep-alive", "new"):
        http_us = min(
            [
                await http_cpu_per_scrape_us(metrics, statuses, args.scrapes, connection)
                for _ in range(args.repeats)
            ]
        )
        print(
            f"HTTP scrape, {connection + ' connection:':<24}{http_us / 1000:.3f} ms CPU per scrape"
            " (damond process, best of repeats)"
        )

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Replay(text.decode()))
    generate_us = cpu_per_call_us(lambda: generate_latest(registry), max(20, args.scrapes // 20))
    print(f"prometheus-client generate_latest:   {generate_us / 1000:.3f} ms CPU (comparison)")


if __name__ == "__main__":
    asyncio.run(main())
