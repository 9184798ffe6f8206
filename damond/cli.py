"""The ``damond`` command line: parsing, loading the configuration, exit codes."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog

from damond import __version__
from damond.config import ConfigError, Settings, config_path, environment_warnings
from damond.metrics.statusclient import add_status_arguments, status_command
from damond.model.errors import BackendError, EnvironmentRefused
from damond.runtime.configsource import ConfigSource, load_daemon_settings
from damond.runtime.logs import configure_logging
from damond.runtime.preflight import host_problems, mqtt_file_errors

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 2
EXIT_ENVIRONMENT = 3

DESCRIPTION = "A user-space controller for DAMON-based tiered memory."
EPILOG = """\
exit codes:
  0  success
  1  runtime failure
  2  invalid configuration or arguments
  3  this host cannot run damond (no DAMON, not root, port in use, ...)

Every setting can also come from a DAMOND_<FIELD> environment variable
(DAMOND_MQTT__PORT=1884); flags win over the environment, which wins over the file."""

FLAGS = {
    "backend": "--backend",
    "interval_s": "--interval",
    "log_level": "--log-level",
    "state_dir": "--state-dir",
    "simulation.seed": "--seed",
    "mqtt.host": "--broker (host)",
    "mqtt.port": "--broker (port)",
}
"""The flag that sets each configuration field, to name it in errors about its value."""


def _add_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str, summary: str
) -> argparse.ArgumentParser:
    return sub.add_parser(
        name,
        help=summary,
        description=summary[0].upper() + summary[1:] + ".",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def config_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-c",
        "--config",
        type=Path,
        metavar="FILE",
        help="TOML file (default: $DAMOND_CONFIG, else /etc/damond/damond.toml if it exists, "
        "else the embedded default)",
    )


def daemon_args(p: argparse.ArgumentParser, backend: bool = True) -> None:
    """The flags that override the daemon's settings (``backend``: also ``--backend``)."""
    if backend:
        p.add_argument("--backend", choices=["simulated", "sysfs"], help="overrides backend")
    p.add_argument(
        "--interval",
        type=float,
        dest="interval_s",
        metavar="SECONDS",
        help="control-loop period; overrides interval_s",
    )
    p.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error"],
        help="overrides log_level",
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="damond",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"damond {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    for name, summary in (
        ("run", "run the daemon in the foreground"),
        ("check", "validate the configuration and probe the backend and the host"),
    ):
        p = _add_parser(sub, name, summary)
        config_arg(p)
        daemon_args(p)
        p.add_argument("--state-dir", type=Path, metavar="DIR", help="overrides state_dir")
    sim = _add_parser(sub, "simulate", "run the controllers against the simulator in virtual time")
    config_arg(sim)
    daemon_args(sim, backend=False)
    sim.add_argument(
        "--duration",
        type=float,
        default=3600.0,
        metavar="SECONDS",
        help="virtual time to simulate, 0 to 864000 (default: 3600)",
    )
    sim.add_argument("--seed", type=int, help="overrides simulation.seed")
    sim.add_argument(
        "--json", type=Path, dest="json_path", metavar="FILE", help="write the result as JSON"
    )
    sim.add_argument(
        "--plot",
        type=Path,
        dest="plot_path",
        metavar="FILE",
        help="plot the run as a PNG (needs the plot extra)",
    )
    _policy_parser(sub, config_arg)
    status = _add_parser(sub, "status", "print a running daemon's contexts from its /status")
    config_arg(status)
    add_status_arguments(status)
    return parser


def _policy_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    config_arg: Callable[[argparse.ArgumentParser], None],
) -> None:
    policy = sub.add_parser("policy", help="push policies over MQTT, read hosts' state")
    verbs = policy.add_subparsers(dest="policy_command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        config_arg(p)
        p.add_argument(
            "--broker", metavar="HOST[:PORT]", help="the broker (default: mqtt.host and mqtt.port)"
        )
        p.add_argument(
            "--timeout",
            type=float,
            default=10.0,
            metavar="SECONDS",
            help="how long to wait for the hosts' answers (default: 10)",
        )

    def addressed(p: argparse.ArgumentParser) -> None:
        where = p.add_mutually_exclusive_group(required=True)
        where.add_argument("--host", metavar="H", help="one host (its mqtt.host_id)")
        where.add_argument("--group", metavar="G", help="every host of mqtt.group G")
        where.add_argument("--fleet", action="store_true", help="every host")

    push = verbs.add_parser("push", help="publish a policy document and wait for the acks")
    common(push)
    push.add_argument("file", type=Path, metavar="FILE", help="the policy document (JSON)")
    addressed(push)
    push.add_argument("--key", type=Path, metavar="FILE", help="Ed25519 private key (PEM) to sign")
    clear = verbs.add_parser(
        "clear", help="remove a retained policy from the broker (hosts keep what they applied)"
    )
    common(clear)
    addressed(clear)
    get = verbs.add_parser("get", help="print a host's retained state")
    common(get)
    get.add_argument("--host", required=True, metavar="H", help="the host (its mqtt.host_id)")
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


def _name_flags(errors: list[str], args: argparse.Namespace) -> list[str]:
    """Errors about a value a flag gave, named by the flag instead of the field."""
    given = {field for field in _flatten(_overrides(args))}
    named: list[str] = []
    for line in errors:
        field, sep, reason = line.partition(": ")
        if sep and field in given and field in FLAGS:
            line = f"{FLAGS[field]}: {reason}"
        named.append(line)
    return named


def _flatten(overrides: dict[str, Any], prefix: str = "") -> list[str]:
    fields: list[str] = []
    for key, value in overrides.items():
        if isinstance(value, dict):
            fields += _flatten(value, f"{prefix}{key}.")
        else:
            fields.append(prefix + key)
    return fields


def _print_config_errors(errors: list[str]) -> None:
    n = len(errors)
    print(f"damond: invalid configuration ({n} error{'s' if n != 1 else ''}):", file=sys.stderr)
    for line in errors:
        print(f"  {line}", file=sys.stderr)


def _refuse_host(settings: Settings) -> None:
    """Raise EnvironmentRefused naming every reason this host cannot run ``settings``."""
    problems = host_problems(settings)
    if problems:
        raise EnvironmentRefused("; ".join(problems))


def _warn_environment() -> None:
    """Name every ``DAMOND_*`` variable that is no setting (the daemon logs them instead)."""
    for warning in environment_warnings():
        print(f"damond: warning: {warning}", file=sys.stderr)


def cmd_run(args: argparse.Namespace) -> int:
    from damond.runtime.daemon import run_daemon

    source = ConfigSource(config_path(args.config), _overrides(args))
    settings = source.load()
    _refuse_host(settings)
    configure_logging(settings.log_level)
    log = structlog.get_logger("damond")
    for warning in environment_warnings():
        log.warning("unknown environment variable ignored", detail=warning)
    mqtt = settings.mqtt
    if mqtt.enabled:
        log.info("policy channel on", broker=f"{mqtt.host}:{mqtt.port}", tls=mqtt.use_tls)
    else:
        named = "host" in mqtt.model_fields_set  # a broker, turned off with enabled = false
        log.info("policy channel off", reason="mqtt.enabled = false" if named else "no mqtt.host")
    asyncio.run(run_daemon(settings, source))
    return EXIT_OK


def cmd_check(args: argparse.Namespace) -> int:
    from damond.runtime.daemon import make_backend

    path = config_path(args.config)
    settings = _load(args)
    _warn_environment()
    configure_logging(settings.log_level if args.log_level else "warning", sys.stderr)
    if settings.mqtt.enabled:
        mqtt_errors = mqtt_file_errors(settings.mqtt)
        if mqtt_errors:
            raise ConfigError(mqtt_errors)
    _refuse_host(settings)
    backend = make_backend(settings)

    async def probe() -> None:
        await backend.open()
        await backend.close()

    asyncio.run(probe())
    print(f"config: ok ({len(settings.contexts)} contexts) from {path or 'the embedded default'}")
    print(f"backend: {backend.name}")
    print(f"kernel: {backend.kernel_version()}")
    print("features:")
    features = backend.features()
    for name, supported in sorted(features.items()):
        print(f"  {name:<24} {'yes' if supported else 'no'}")
    print("goal metrics:")  # a kernel names a metric it computes in its features
    for metric in sorted({c.goal.metric for c in settings.contexts}):
        print(f"  {metric:<24} {'native' if features.get(metric) else 'computed by damond'}")
    from damond.control.describe import check_lines

    print(*check_lines(settings), sep="\n")
    from damond.config.presets import preset_lines

    for line in preset_lines(settings.contexts):
        print(line)
    return EXIT_OK


def cmd_simulate(args: argparse.Namespace) -> int:
    from damond.simulation import report
    from damond.simulation.run import check_duration_flag, simulate

    check_duration_flag(args.duration)
    overrides = _overrides(args)
    overrides["backend"] = "simulated"
    settings = load_daemon_settings(config_path(args.config), overrides)
    _warn_environment()
    configure_logging(settings.log_level if args.log_level else "warning", sys.stderr)
    result = simulate(settings, args.duration, sys.stderr)
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
        if args.policy_command in ("push", "clear"):
            if args.host:
                target = tool.Target(Scope.HOST, args.host)
            elif args.group:
                target = tool.Target(Scope.GROUP, args.group)
            else:
                target = tool.Target(Scope.FLEET)
            if args.policy_command == "clear":
                return tool.run(cfg, tool.clear(cfg, target, args.timeout, sys.stdout))
            document = tool.load_document(args.file, args.key, target)
            return tool.run(
                cfg, tool.push(cfg, document, target, args.timeout, sys.stdout, sys.stderr)
            )
        if args.policy_command == "get":
            return tool.run(cfg, tool.get_state(cfg, args.host, args.timeout, sys.stdout))
        return tool.run(cfg, tool.status(cfg, args.timeout, sys.stdout))
    except tool.ToolError as exc:
        print(f"damond: {exc}", file=sys.stderr)
        return exc.code


COMMANDS = {"run": cmd_run, "check": cmd_check, "simulate": cmd_simulate, "policy": cmd_policy}
COMMANDS["status"] = status_command


def main(argv: list[str] | None = None) -> int:
    try:
        try:
            return _dispatch(_parser().parse_args(argv))
        finally:  # also after --help: a closed pipe shows here, not at the interpreter's exit
            sys.stdout.flush()
    except BrokenPipeError:
        # the reader went away (`damond check | head -1`): what it wanted it has
        _silence_output()
        return EXIT_OK


def _dispatch(args: argparse.Namespace) -> int:
    try:
        return COMMANDS[args.command](args)
    except ConfigError as exc:
        _print_config_errors(_name_flags(exc.errors, args))
        return EXIT_CONFIG
    except EnvironmentRefused as exc:
        print(f"damond: cannot run here: {exc}", file=sys.stderr)
        return EXIT_ENVIRONMENT
    except BackendError as exc:
        print(f"damond: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return EXIT_OK


def _silence_output() -> None:
    """Point stdout and stderr at /dev/null, so that the interpreter's final flush of a
    closed pipe raises nothing."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    for stream in (sys.stdout, sys.stderr):
        os.dup2(devnull, stream.fileno())
    os.close(devnull)


if __name__ == "__main__":
    sys.exit(main())
