"""The `faas` command: start the platform locally, register and run functions."""

from __future__ import annotations

import argparse
import ast
import importlib.metadata
import importlib.util
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

from faas.client import Client, unwrap
from faas.errors import FaasClientError
from faas.views import (
    Undecodable,
    decoded,
    function_line,
    task_line,
    task_lines,
    with_decoded_result,
    worker_line,
)

_MODES = ("local", "pull", "push")  # common.models.DispatchMode, without importing the store


class CliError(Exception):
    """A one-line error for the user."""


def main(argv: list[str] | None = None) -> None:
    try:
        args = _parser().parse_args(argv)
        args.run(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except (CliError, FaasClientError, Undecodable) as exc:
        sys.exit(f"error: {exc}")
    except RuntimeError as exc:  # faas.platform.PlatformError, without importing it here
        if type(exc).__name__ != "PlatformError":
            raise
        sys.exit(f"error: {exc}")


def _version() -> str:
    try:
        return importlib.metadata.version("faas-platform")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _client_options(parser: argparse.ArgumentParser, *, sub: bool) -> None:
    """--url and --api-key, accepted before or after the command: a subcommand's copy
    leaves the value alone when absent (SUPPRESS) instead of resetting it to None."""
    default = argparse.SUPPRESS if sub else None
    parser.add_argument(
        "--url", default=default, help="gateway URL (default $FAAS_URL or http://127.0.0.1:8000)"
    )
    parser.add_argument("--api-key", default=default, help="API key (default $FAAS_API_KEY)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="faas", description=__doc__)
    parser.add_argument("--version", action="version", version=f"faas {_version()}")
    _client_options(parser, sub=False)
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    up = sub.add_parser("up", help="start Redis, the dispatcher, workers and the gateway here")
    up.add_argument("--mode", choices=_MODES, default="local")
    up.add_argument("--workers", type=_positive, default=2, help="worker processes (pull/push)")
    up.add_argument(
        "--slots",
        type=_positive,
        default=4,
        help="slots of the dispatcher (local) or of each worker",
    )
    up.add_argument(
        "--gateway-workers", type=_positive, default=1, metavar="N",
        help="gateway server processes (default 1: more pay off only where the gateway has "
        "cores to itself; the scaling knob for many small requests; each process serves "
        "its own /metrics)",
    )  # fmt: skip
    up.add_argument(
        "--prefetch", type=_whole, metavar="N",
        help="tasks each worker holds beyond its free slots, so a freed slot starts the next "
        "at once (default: as many as its slots; 0: none, for long uneven tasks)",
    )  # fmt: skip
    up.add_argument("--host", default="127.0.0.1")
    up.add_argument("--port", type=int, default=8000)
    up.add_argument(
        "--data-dir",
        type=Path,
        default=Path(".faas"),
        help="Redis append-only file and logs (default ./.faas)",
    )
    up.add_argument("--redis-url", help="use this Redis instead of starting one")
    up.add_argument("--verbose", action="store_true", help="print the components' logs here")
    up.set_defaults(run=_up)

    def command(name: str, helptext: str, handler: Any, *, reads: bool = True,
                description: str | None = None) -> argparse.ArgumentParser:  # fmt: skip
        cmd = sub.add_parser(name, help=helptext, description=description or helptext)
        _client_options(cmd, sub=True)
        if reads:
            cmd.add_argument("--json", action="store_true", help="print JSON")
        cmd.set_defaults(run=handler)
        return cmd

    reg = command("register", "register FILE.py:FUNCTION; prints its id", _register)
    reg.add_argument("target", metavar="FILE.py:FUNCTION")
    reg.add_argument("--name")

    literals = "ARGs are Python literals (else strings); KEY=VALUE are keywords."
    call = command("call", "run a function and print its result", _call, description=literals)
    submit = command("submit", "queue a call and print the task id", _submit, description=literals)
    for cmd in (call, submit):
        cmd.add_argument("function_id", metavar="FUNCTION", help="a function id, or a name")
        cmd.add_argument("args", nargs="*", metavar="ARG|KEY=VALUE")

    res = command("result", "print a task's result (waits up to --wait seconds)", _result)
    res.add_argument("task_id")
    res.add_argument("--wait", type=float, default=30.0)
    task = command("task", "print everything about a task", _task)
    task.add_argument("task_id")
    for cmd in (call, res, task):
        cmd.add_argument("--raw", action="store_true", help="the result as base64 pickle text")
    command("status", "print a task's status", _status).add_argument("task_id")
    cancel = command(
        "cancel",
        "cancel tasks; prints each one's status afterwards",
        _cancel,
        description="Cancel tasks: a queued one never starts, a running one is killed. "
        "Prints each task's status afterwards: CANCELLED, or the end it already had "
        "(cancelling an ended task changes nothing).",
    )
    cancel.add_argument("task_ids", nargs="+", metavar="TASK")
    logs = command("logs", "print what a task printed (stdout and stderr)", _logs, reads=False,
                   description="Each attempt's output follows an '--- attempt N ---' line.",
                   )  # fmt: skip
    logs.add_argument("task_id")
    logs.add_argument("-f", "--follow", action="store_true", help="stream it until the task ends")
    command("functions", "list registered functions", _functions)
    ps = command("ps", "list the newest tasks", _ps)
    statuses = ["WAITING", "QUEUED", "RUNNING", "COMPLETED", "FAILED", "CANCELLED"]
    ps.add_argument("--status", type=str.upper, choices=statuses)
    ps.add_argument("--function", metavar="FUNCTION_ID")
    ps.add_argument("-n", "--limit", type=int, default=20)
    command("workers", "list the workers and their slots", _workers)
    command("stats", "queue depth, running tasks, capacity, throughput", _stats)

    keys = sub.add_parser("keys", help="make API keys for the gateway's keys file")
    keys_sub = keys.add_subparsers(required=True, metavar="ACTION")
    new = keys_sub.add_parser(
        "new",
        help="make a new API key for TENANT",
        description="Print a new random API key for TENANT (shown only this once) and the"
        " line to append to the gateway's keys file ($FAAS_API_KEYS_FILE), which holds only"
        " the key's SHA-256.",
    )
    new.add_argument("tenant", metavar="TENANT")
    new.add_argument("--quota", type=int, help="this tenant's most unfinished tasks")
    new.add_argument("--json", action="store_true", help="print JSON: tenant, key, line")
    new.set_defaults(run=_new_key)
    return parser


# -- up -----------------------------------------------------------------------------------


def _positive(text: str) -> int:
    """An argparse type: a whole number of at least 1 (0 slots would start and hang)."""
    value = _whole(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _whole(text: str) -> int:
    """An argparse type: a whole number of at least 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, got {value}")
    return value


def _up(args: argparse.Namespace) -> None:
    from common.models import DispatchMode
    from faas.platform import LocalPlatform, PlatformConfig

    config = PlatformConfig(
        mode=DispatchMode(args.mode), workers=args.workers, slots=args.slots, host=args.host,
        port=args.port, redis_url=args.redis_url, data_dir=args.data_dir,
        gateway_workers=args.gateway_workers, prefetch=args.prefetch,
        log_dir=None if args.verbose else args.data_dir / "logs",
    )  # fmt: skip
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt))
    platform = LocalPlatform(config)
    print(f"starting faas ({args.mode} mode)...", flush=True)
    platform.start()
    try:
        print(f"faas is up: {platform.url}  (API docs: {platform.url}/docs)")
        print(f"  redis:  {platform.redis_address}", end="")
        if not config.redis_url:  # the embedded one: a user per component
            print(f"  (users' passwords: {args.data_dir / 'redis-passwords.json'})", end="")
        print()
        if config.log_dir:
            print(f"  logs:   {config.log_dir}/")
        print("Ctrl-C stops everything.", flush=True)
        while True:
            time.sleep(0.5)
            platform.revive(lambda line: print(line, flush=True))
    except KeyboardInterrupt:
        drain = platform.drain_timeout_s()
        print(f"\nstopping: running tasks may finish within {drain:g} s (Ctrl-C again kills)",
              flush=True)  # fmt: skip
    finally:
        try:
            platform.stop()
        except KeyboardInterrupt:
            for proc in platform.processes():
                proc.kill()
            raise
    print("stopped.")


# -- client commands -------------------------------------------------------------------------


def _client(args: argparse.Namespace) -> Client:
    return Client(args.url, api_key=args.api_key)


def _emit(args: argparse.Namespace, human: str, data: Any) -> None:
    print(json.dumps(data, indent=2) if args.json else human)


def _register(args: argparse.Namespace) -> None:
    path, _, attr = args.target.rpartition(":")
    if not path or not attr:
        raise CliError(f"expected FILE.py:FUNCTION, got {args.target!r}")
    if not Path(path).is_file():
        raise CliError(f"no such file: {path}")
    spec = importlib.util.spec_from_file_location(Path(path).stem, path)
    if spec is None or spec.loader is None:
        raise CliError(f"cannot load {path} as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise CliError(f"importing {path} failed: {type(exc).__name__}: {exc}") from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise CliError(f"{path} has no function {attr}")
    remote = _client(args).register(fn, name=args.name or attr)
    _emit(args, remote.id, {"function_id": remote.id, "name": remote.name})


def _parse_call(items: list[str]) -> tuple[list[Any], dict[str, Any]]:
    positional: list[Any] = []
    keywords: dict[str, Any] = {}
    for item in items:
        key, eq, value = item.partition("=")
        if eq and key.isidentifier():
            keywords[key] = _literal(value)
        else:
            positional.append(_literal(item))
    return positional, keywords


def _literal(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _call(args: argparse.Namespace) -> None:
    positional, keywords = _parse_call(args.args)
    task = _client(args).function(args.function_id).run(*positional, **keywords)
    _print_outcome(args, task.wait())


def _submit(args: argparse.Namespace) -> None:
    positional, keywords = _parse_call(args.args)
    task = _client(args).function(args.function_id).submit(*positional, **keywords)
    _emit(args, task.id, {"task_id": task.id})


def _result(args: argparse.Namespace) -> None:
    _print_outcome(args, _client(args).task(args.task_id).info(wait=args.wait))


def _print_outcome(args: argparse.Namespace, view: dict[str, Any]) -> None:
    """The value (decoded), or one line saying why there is none; exit 1 unless COMPLETED."""
    if args.json:
        print(json.dumps(with_decoded_result(view, raw=args.raw), indent=2))
        if view["status"] != "COMPLETED":
            sys.exit(1)
        return
    if view["status"] not in ("COMPLETED", "FAILED", "CANCELLED"):
        raise CliError(f"task {view['task_id']} is still {view['status']}")
    if args.raw or view["status"] == "COMPLETED":
        print(decoded(view, raw=args.raw))
        if view["status"] == "COMPLETED":
            return
        sys.exit(1)
    try:
        unwrap(view)
    except Exception as exc:
        raise CliError(
            f"task {view['task_id']} {view['status']}: {type(exc).__name__}: {exc}"
        ) from None


def _status(args: argparse.Namespace) -> None:
    status = _client(args).task(args.task_id).status()
    _emit(args, status, {"task_id": args.task_id, "status": status})


def _cancel(args: argparse.Namespace) -> None:
    views = _client(args).cancel(args.task_ids)
    human = "\n".join(f"{v['task_id']}  {v['status']}" for v in views)
    _emit(args, human, [{"task_id": v["task_id"], "status": v["status"]} for v in views])


def _task(args: argparse.Namespace) -> None:
    view = _client(args).task(args.task_id).info()
    if args.json:
        print(json.dumps(with_decoded_result(view, raw=args.raw), indent=2))
    else:
        print("\n".join(task_lines(view, raw=args.raw)))


def _logs(args: argparse.Namespace) -> None:
    task = _client(args).task(args.task_id)
    if not args.follow:
        sys.stdout.write(task.logs())
        return
    for text in task.follow_logs():
        sys.stdout.write(text)
        sys.stdout.flush()


def _functions(args: argparse.Namespace) -> None:
    functions = _client(args).functions()
    human = "\n".join(function_line(f) for f in functions) or "(no functions registered)"
    _emit(args, human, functions)


def _ps(args: argparse.Namespace) -> None:
    tasks = _client(args).tasks(status=args.status, function_id=args.function, limit=args.limit)
    human = "\n".join(task_line(t) for t in tasks) or "(no tasks)"
    _emit(args, human, tasks)


def _workers(args: argparse.Namespace) -> None:
    workers = _client(args).workers()
    human = "\n".join(worker_line(w) for w in workers) or "(no workers connected)"
    _emit(args, human, workers)


def _stats(args: argparse.Namespace) -> None:
    stats = _client(args).stats()
    human = (
        f"queued {stats['queued']}  running {stats['running']}  "
        f"workers {stats['workers']} ({stats['slots']} slots)  last minute: "
        f"{stats['completed_last_minute']} completed, {stats['failed_last_minute']} failed"
    )
    _emit(args, human, stats)


def _new_key(args: argparse.Namespace) -> None:
    from common.tenants import new_key_line

    if args.quota is not None and args.quota < 1:
        raise CliError("--quota must be at least 1")
    try:
        key, line = new_key_line(args.tenant)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    if args.quota is not None:
        line += f":{args.quota}"
    if args.json:
        print(json.dumps({"tenant": args.tenant, "key": key, "line": line}))
        return
    print(f"key:  {key}\n      (give it to the tenant; it is not stored and not shown again)")
    print(f"line: {line}\n      (append it to the keys file, then restart the gateway)")


if __name__ == "__main__":
    main()
