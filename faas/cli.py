"""The `faas` command: start the platform locally, register and run functions."""

from __future__ import annotations

import argparse
import ast
import importlib.util
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

from common.models import DispatchMode
from faas.client import Client, unwrap
from faas.errors import ApiError, FaasClientError
from faas.platform import LocalPlatform, PlatformConfig


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    try:
        args.run(args)
    except (ApiError, FaasClientError) as exc:
        sys.exit(f"error: {exc}")
    except KeyboardInterrupt:
        sys.exit(130)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="faas", description=__doc__)
    parser.add_argument("--url", help="gateway URL (default $FAAS_URL or http://127.0.0.1:8000)")
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    up = sub.add_parser("up", help="start Redis, the dispatcher, workers and the gateway here")
    up.add_argument("--mode", choices=[m.value for m in DispatchMode], default="local")
    up.add_argument("--workers", type=int, default=2, help="worker processes (pull/push)")
    up.add_argument(
        "--slots", type=int, default=4, help="slots of the dispatcher (local) or of each worker"
    )
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

    reg = sub.add_parser("register", help="register FILE.py:FUNCTION; prints its id")
    reg.add_argument("target", metavar="FILE.py:FUNCTION")
    reg.add_argument("--name")
    reg.set_defaults(run=_register)

    for name, helptext, handler in (
        ("call", "run a function and print its result", _call),
        ("submit", "queue a call and print the task id", _submit),
    ):
        cmd = sub.add_parser(
            name,
            help=helptext,
            description="ARGs are Python literals (else strings); KEY=VALUE are keywords.",
        )
        cmd.add_argument("function_id")
        cmd.add_argument("args", nargs="*", metavar="ARG|KEY=VALUE")
        cmd.set_defaults(run=handler)

    res = sub.add_parser("result", help="print a task's result (waits up to --wait seconds)")
    res.add_argument("task_id")
    res.add_argument("--wait", type=float, default=30.0)
    res.set_defaults(run=_result)

    for name, helptext, handler in (
        ("status", "print a task's status", _status),
        ("task", "print everything about a task as JSON", _task),
        ("functions", "list registered functions", _functions),
    ):
        cmd = sub.add_parser(name, help=helptext)
        if name != "functions":
            cmd.add_argument("task_id")
        cmd.set_defaults(run=handler)
    return parser  # fmt: skip


# -- up -----------------------------------------------------------------------------------


def _up(args: argparse.Namespace) -> None:
    config = PlatformConfig(
        mode=DispatchMode(args.mode), workers=args.workers, slots=args.slots, host=args.host,
        port=args.port, redis_url=args.redis_url, data_dir=args.data_dir,
        log_dir=None if args.verbose else args.data_dir / "logs",
    )  # fmt: skip
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt))
    platform = LocalPlatform(config)
    print(f"starting faas ({args.mode} mode)...", flush=True)
    with platform:
        print(f"faas is up: {platform.url}  (API docs: {platform.url}/docs)")
        print(f"  redis:  {platform.redis_url}")
        if config.log_dir:
            print(f"  logs:   {config.log_dir}/")
        print("Ctrl-C stops everything.", flush=True)
        try:
            _supervise(platform)
        except KeyboardInterrupt:
            print("\nstopping...", flush=True)
    print("stopped.")


def _supervise(platform: LocalPlatform) -> None:
    """Restart the dispatcher, a worker or the gateway if one dies; tasks survive it."""
    while True:
        time.sleep(1)
        if platform.redis is not None and not platform.redis.alive():
            raise SystemExit("redis-server exited; stopping (see the logs)")
        for proc in platform.processes():
            if not proc.alive():
                print(f"{proc.name} exited (code {proc.popen.returncode}); restarting", flush=True)  # type: ignore[union-attr]
                proc.start()


# -- client commands -------------------------------------------------------------------------


def _client(args: argparse.Namespace) -> Client:
    return Client(args.url)


def _register(args: argparse.Namespace) -> None:
    path, _, attr = args.target.rpartition(":")
    if not path or not attr:
        sys.exit("error: expected FILE.py:FUNCTION")
    spec = importlib.util.spec_from_file_location(Path(path).stem, path)
    if spec is None or spec.loader is None:
        sys.exit(f"error: cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    fn = getattr(module, attr, None)
    if not callable(fn):
        sys.exit(f"error: {path} has no function {attr}")
    print(_client(args).register(fn, name=args.name or attr).id)


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
    fn = _client(args).function(args.function_id)
    print(repr(fn(*positional, **keywords)))


def _submit(args: argparse.Namespace) -> None:
    positional, keywords = _parse_call(args.args)
    fn = _client(args).function(args.function_id)
    print(fn.submit(*positional, **keywords).id)


def _result(args: argparse.Namespace) -> None:
    view = _client(args).task(args.task_id).info(wait=args.wait)
    if view["status"] not in ("COMPLETED", "FAILED"):
        sys.exit(f"task is still {view['status']}")
    try:
        print(repr(unwrap(view)))
    except Exception as exc:
        sys.exit(f"task FAILED: {type(exc).__name__}: {exc}")


def _status(args: argparse.Namespace) -> None:
    print(_client(args).task(args.task_id).status())


def _task(args: argparse.Namespace) -> None:
    print(json.dumps(_client(args).task(args.task_id).info(), indent=2))


def _functions(args: argparse.Namespace) -> None:
    for f in _client(args).functions():
        print(f"{f['function_id']}  {f['name']}  {f['size_bytes']} bytes")


if __name__ == "__main__":
    main()
