"""Publish-to-ack latency of the policy channel, and the daemon's CPU use meanwhile.

Starts a mosquitto broker on a free loopback port and ``damond run`` on the
simulated backend, then publishes N valid host policies one after another
(each waits for its ``applied`` ack, so every one is validated, persisted with
fsync and applied) and prints p50/p99 latency and the daemon's CPU seconds.

    python benchmarks/policy_latency.py [--count 1000] [--rate 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiomqtt

NODELAY = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    raise SystemExit(f"broker did not listen on {port}")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def measure(port: int, count: int) -> list[float]:
    latencies: list[float] = []
    async with aiomqtt.Client("127.0.0.1", port, socket_options=NODELAY) as client:
        await client.subscribe("damond/hosts/bench/ack", qos=1)
        messages = aiter(client.messages)
        for gen in range(1, count + 1):
            doc = {
                "id": f"bench-{gen}",
                "generation": gen,
                "contexts": {"node0": {"target_bp": 5000 + gen % 1000}},
            }
            started = time.perf_counter()
            await client.publish("damond/hosts/bench/policy", json.dumps(doc), qos=1)
            ack = json.loads(bytes((await asyncio.wait_for(anext(messages), 10)).payload))
            latencies.append(time.perf_counter() - started)
            if ack["status"] != "applied" or ack["id"] != doc["id"]:
                raise SystemExit(f"unexpected ack {ack}")
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument(
        "--rate", type=float, default=1000.0, help="mqtt.rate_limit_per_s of the daemon"
    )
    args = parser.parse_args()
    mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        port = free_port()
        conf = work / "mosquitto.conf"
        conf.write_text(
            f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nuser root\n"
            "set_tcp_nodelay true\n"
        )
        broker = subprocess.Popen([mosquitto, "-c", str(conf)], stderr=subprocess.DEVNULL)
        daemon: subprocess.Popen[bytes] | None = None
        try:
            wait_port(port)
            config = work / "damond.toml"
            config.write_text(
                f'interval_s = 1.0\nstate_dir = "{work / "state"}"\nlog_level = "warning"\n'
                f'[metrics]\nenabled = false\n[mqtt]\nhost = "127.0.0.1"\nport = {port}\n'
                f'host_id = "bench"\nrate_limit_per_s = {args.rate}\n'
            )
            env = {k: v for k, v in os.environ.items() if not k.startswith("DAMOND_")}
            daemon = subprocess.Popen(
                [sys.executable, "-m", "damond", "run", "-c", str(config)], env=env, cwd=work
            )
            time.sleep(2.0)  # imports, connection, subscription
            cpu_before = cpu_seconds(daemon.pid)
            wall_before = time.perf_counter()
            latencies = asyncio.run(measure(port, args.count))
            wall = time.perf_counter() - wall_before
            cpu = cpu_seconds(daemon.pid) - cpu_before
        finally:
            if daemon is not None:
                daemon.terminate()
                daemon.wait(timeout=20)
            broker.kill()
            broker.wait()
    print(f"policies: {args.count} (each validated, persisted with fsync, applied, acked)")
    print(f"publish-to-ack p50: {percentile(latencies, 0.50) * 1000:.2f} ms")
    print(f"publish-to-ack p99: {percentile(latencies, 0.99) * 1000:.2f} ms")
    print(f"publish-to-ack max: {max(latencies) * 1000:.2f} ms")
    print(f"wall time: {wall:.2f} s, {args.count / wall:.0f} policies/s")
    print(f"daemon CPU: {cpu:.2f} s ({100 * cpu / wall:.0f}% of one core while measuring)")


if __name__ == "__main__":
    main()
