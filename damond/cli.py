"""The ``damond`` command line. Exit codes: 0 ok, 1 runtime failure,
2 invalid config or arguments, 3 the environment cannot run damond."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from damond import __version__
from damond.config import ConfigError, MqttConfig, Settings, config_path
from damond.model.errors import BackendError, EnvironmentRefused
from damond.runtime.configsource import ConfigSource, load_daemon_settings
from damond.runtime.logs import configure_logging

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 2
EXIT_ENVIRONMENT = 3


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="damond", description=__doc__)
    parser.add_argument("--version", action="version", version=f"damond {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    def config_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "-c",
            "--config",
            type=Path,
            help="TOML file (default: $DAMOND_CONFIG, else /etc/damond/damond.toml if it exists)",
        )
        p.add_argument("--backend", choices=["simulated", "sysfs"])
        p.add_argument("--interval", type=float, dest="interval_s", metavar="SECONDS")
        p.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
        p.add_argument("--state-dir", type=Path)

    run = sub.add_parser("run", help="run the daemon in the foreground")
    config_arg(run)
    check = sub.add_parser("check", help="validate the config and probe the kernel")
    config_arg(check)
    sim = sub.add_parser("simulate", help="run the controllers against the simulator")
    config_arg(sim)
    sim.add_argument("--duration", type=float, default=3600.0, metavar="SECONDS")
    sim.add_argument("--seed", type=int)
    sim.add_argument("--json", type=Path, dest="json_path", metavar="FILE")
    sim.add_argument("--plot", type=Path, dest="plot_path", metavar="FILE")
    _policy_parser(sub, config_arg)
    return parser


def _policy_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    config_arg: Callable[[argparse.ArgumentParser], None],
) -> None:
    policy = sub.add_parser("policy", help="push policies over MQTT, read hosts' state")
    verbs = policy.add_subparsers(dest="policy_command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        config_arg(p)
        p.add_argument("--broker", metavar="HOST[:PORT]", help="default: mqtt.host and mqtt.port")
        p.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS")

    push = verbs.add_parser("push", help="publish a policy document and wait for the acks")
    common(push)
    push.add_argument("file", type=Path, metavar="FILE")
    where = push.add_mutually_exclusive_group(required=True)
    where.add_argument("--host", metavar="H")
    where.add_argument("--group", metavar="G")
    where.add_argument("--fleet", action="store_true")
    push.add_argument("--key", type=Path, metavar="FILE", help="Ed25519 private key (PEM) to sign")
    get = verbs.add_parser("get", help="print a host's retained state")
    common(get)
    get.add_argument("--host", required=True, metavar="H")
    status = verbs.add_parser("status", help="every host's online flag and policy generations")
    common(status)


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in ("backend", "interval_s", "log_level", "state_dir"):
        value = getattr(args, key, None)
        if value is not None:
            out[key] = value
    if getattr(args, "seed", None) is not None:
        out["simulation"] = {"seed": args.seed}
    broker = getattr(args, "broker", None)
    if broker:
        host, _, port = broker.rpartition(":") if ":" in broker else (broker, "", "")
        out["mqtt"] = {"host": host, **({"port": port} if port else {})}
    return out


def _load(args: argparse.Namespace) -> Settings:
    return load_daemon_settings(config_path(args.config), _overrides(args))


def _print_config_errors(exc: ConfigError) -> None:
    n = len(exc.errors)
    print(f"damond: invalid configuration ({n} error{'s' if n != 1 else ''}):", file=sys.stderr)
    for line in exc.errors:
        print(f"  {line}", file=sys.stderr)


def cmd_run(args: argparse.Namespace) -> int:
    from damond.runtime.daemon import run_daemon

    source = ConfigSource(config_path(args.config), _overrides(args))
    settings = source.load()
    configure_logging(settings.log_level)
    asyncio.run(run_daemon(settings, source))
    return EXIT_OK


def _check_mqtt_files(cfg: MqttConfig) -> None:
    """Read the files the policy channel loads only at run time, outside the
    config's validation (policy keys, the broker password), and raise every problem."""
    from damond.policy.broker import CredentialsError, read_password
    from damond.policy.signing import configured_keys

    errors: list[str] = []
    try:
        configured_keys(cfg)
    except ConfigError as exc:
        errors += exc.errors
    if cfg.username is not None and cfg.password_file is not None:
        try:
            read_password(cfg.password_file)
        except CredentialsError as exc:
            errors.append(str(exc))
    if errors:
        raise ConfigError(errors)


def cmd_check(args: argparse.Namespace) -> int:
    from damond.runtime.daemon import make_backend

    settings = _load(args)
    configure_logging(settings.log_level if args.log_level else "warning", sys.stderr)
    if settings.mqtt.enabled:
        _check_mqtt_files(settings.mqtt)
    backend = make_backend(settings)

    async def probe() -> None:
        await backend.open()
        await backend.close()

    asyncio.run(probe())
    print(f"config: ok ({len(settings.contexts)} contexts)")
    print(f"backend: {backend.name}")
    print(f"kernel: {backend.kernel_version()}")
    print("features:")
    for name, supported in sorted(backend.features().items()):
        print(f"  {name:<24} {'yes' if supported else 'no'}")
    return EXIT_OK


def cmd_simulate(args: argparse.Namespace) -> int:
    from damond.simulation import report
    from damond.simulation.run import run_simulation

    overrides = _overrides(args)
    overrides["backend"] = "simulated"
    settings = load_daemon_settings(config_path(args.config), overrides)
    configure_logging(settings.log_level if args.log_level else "warning", sys.stderr)
    result = asyncio.run(run_simulation(settings, args.duration))
    print(report.format_summary(result))
    if args.json_path is not None:
        report.write_json(result, args.json_path)
    if args.plot_path is not None:
        try:
            report.write_plot(result, args.plot_path)
        except report.PlotUnavailable as exc:
            print(f"damond: {exc}", file=sys.stderr)
            return EXIT_FAILURE
    return EXIT_OK


def cmd_policy(args: argparse.Namespace) -> int:
    from damond.policy import tool
    from damond.policy.document import Scope

    cfg = _load(args).mqtt
    try:
        if args.policy_command == "push":
            if args.host:
                target = tool.Target(Scope.HOST, args.host)
            elif args.group:
                target = tool.Target(Scope.GROUP, args.group)
            else:
                target = tool.Target(Scope.FLEET)
            document = tool.load_document(args.file, args.key)
            return tool.run(cfg, tool.push(cfg, document, target, args.timeout, sys.stdout))
        if args.policy_command == "get":
            return tool.run(cfg, tool.get_state(cfg, args.host, args.timeout, sys.stdout))
        return tool.run(cfg, tool.status(cfg, args.timeout, sys.stdout))
    except tool.ToolError as exc:
        print(f"damond: {exc}", file=sys.stderr)
        return exc.code


COMMANDS = {"run": cmd_run, "check": cmd_check, "simulate": cmd_simulate, "policy": cmd_policy}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except ConfigError as exc:
        _print_config_errors(exc)
        return EXIT_CONFIG
    except EnvironmentRefused as exc:
        print(f"damond: cannot run here: {exc}", file=sys.stderr)
        return EXIT_ENVIRONMENT
    except BackendError as exc:
        print(f"damond: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
