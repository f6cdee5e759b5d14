"""One platform for `python -m bench --baselines/--compare`: run from a checkout's root as
`python -c <this file's text> CONFIG_JSON`, so that the platform started is that
checkout's (the current directory comes first on sys.path, and its components inherit it).
Prints one JSON line ({"ready": true, "port": ...}) once the gateway answers, then holds
the platform until stdin closes; the parent drives it over HTTP.

Self-contained on purpose: an older checkout has no module of this benchmark.
"""

import dataclasses
import json
import sys
from pathlib import Path

from common.models import DispatchMode
from faas.platform import LocalPlatform, PlatformConfig


def main():
    wanted = json.loads(sys.argv[1])
    known = {f.name for f in dataclasses.fields(PlatformConfig)}
    # An older PlatformConfig may lack a field (e.g. gateway_workers): leave it out.
    config = {k: v for k, v in wanted.items() if k in known}
    config["mode"] = DispatchMode(config["mode"])
    for key in ("data_dir", "log_dir"):
        config[key] = Path(config[key])
    with LocalPlatform(PlatformConfig(**config)):
        print(json.dumps({"ready": True, "port": config["port"],
                          "ignored": sorted(set(wanted) - known)}), flush=True)  # fmt: skip
        sys.stdin.read()


main()
