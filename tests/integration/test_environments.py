"""Per-function environments with the real pip, offline: a wheelhouse of tiny wheels
made by tests.wheelhouse (no build backend needed), `--no-index --find-links`."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.wheelhouse import make_bundle, make_wheel
from worker import environments
from worker.environments import Environments, EnvSpec, Failed, Pending, Ready

REPO = Path(__file__).resolve().parents[2]
TIMEOUT_S = 60.0


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    house = tmp_path_factory.mktemp("wheelhouse")
    make_wheel(house, "faas_testpkg", "1.0")
    make_wheel(house, "faas_testpkg", "2.0")
    return house


def offline(root: Path, house: Path, **kwargs: float) -> Environments:
    return Environments(root, find_links=[str(house)], no_index=True, **kwargs)  # type: ignore[arg-type]


def imported(path: Path, module: str) -> tuple[str, str]:
    """VERSION and __file__ of `module` imported in a fresh interpreter with `path` first."""
    code = f"import json, {module} as m; print(json.dumps([getattr(m, 'VERSION', ''), m.__file__]))"
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(path)},
                         capture_output=True, text=True, timeout=TIMEOUT_S, check=True)  # fmt: skip
    version, file = json.loads(out.stdout)
    return version, file


CHILD = """
import json, sys
from pathlib import Path
from worker.environments import EnvSpec, Environments, Pending
envs = Environments(Path(sys.argv[1]), find_links=[sys.argv[2]], no_index=True)
spec = EnvSpec(("faas_testpkg==1.0",))
print(json.dumps({"first": type(envs.request(spec)).__name__}), flush=True)
state = envs.wait(spec, 60)
print(json.dumps({"path": str(state.path), "pip_runs": envs.pip_runs}), flush=True)
"""


def test_concurrent_requests_in_threads_and_processes_install_once(
    tmp_path: Path, wheelhouse: Path
) -> None:
    root = tmp_path / "envs"
    envs = offline(root, wheelhouse)
    spec = EnvSpec(("faas_testpkg==1.0",))
    # Hold the key's lock so that every contender queues behind it: a real race.
    lock = open(envs.root / f"{spec.key}.lock", "a+b")  # noqa: SIM115
    fcntl.flock(lock, fcntl.LOCK_EX)
    children = [subprocess.Popen([sys.executable, "-c", CHILD, str(root), str(wheelhouse)],
                                 cwd=REPO, stdout=subprocess.PIPE, text=True) for _ in range(2)]  # fmt: skip
    try:
        for child in children:  # each has started its install (and so heads for the lock)
            assert child.stdout is not None
            assert json.loads(child.stdout.readline()) == {"first": "Pending"}
        barrier = threading.Barrier(4)
        firsts: list[object] = []

        def contend() -> None:
            barrier.wait(TIMEOUT_S)
            firsts.append(envs.request(spec))

        threads = [threading.Thread(target=contend) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(TIMEOUT_S)
        assert firsts == [Pending()] * 4
    finally:
        fcntl.flock(lock, fcntl.LOCK_UN)
        lock.close()
    state = envs.wait(spec, TIMEOUT_S)
    assert state == Ready(root / environments.abi_tag() / spec.key)
    results = []
    for child in children:
        out, _ = child.communicate(timeout=TIMEOUT_S)
        assert child.returncode == 0
        results.append(json.loads(out))
    assert {r["path"] for r in results} == {str(state.path)}
    assert envs.pip_runs + sum(r["pip_runs"] for r in results) == 1
    assert imported(state.path, "faas_testpkg")[0] == "1.0"
    assert envs.disk_usage(spec.key) > 0
    # A fresh instance (a restarted worker) finds it ready on disk at once.
    assert offline(root, wheelhouse).request(spec) == state


def test_conflicting_versions_side_by_side(tmp_path: Path, wheelhouse: Path) -> None:
    envs = offline(tmp_path, wheelhouse)
    one, two = EnvSpec(("faas_testpkg==1.0",)), EnvSpec(("faas_testpkg == 2.0",))
    assert isinstance(envs.request(one), Pending)
    assert isinstance(envs.request(two), Pending)
    a, b = envs.wait(one, TIMEOUT_S), envs.wait(two, TIMEOUT_S)
    assert isinstance(a, Ready) and isinstance(b, Ready) and a.path != b.path
    for state, version in ((a, "1.0"), (b, "2.0")):
        got, file = imported(state.path, "faas_testpkg")
        assert got == version and file.startswith(str(state.path))


def test_bundle_is_importable_and_combines_with_requirements(
    tmp_path: Path, wheelhouse: Path
) -> None:
    envs = offline(tmp_path, wheelhouse)
    bundle = make_bundle({"mybundle/__init__.py": "VERSION = 'bundled'\n", "helper.py": "X = 1\n"})
    state = envs.wait(EnvSpec(("faas_testpkg==2.0",), (bundle,)), TIMEOUT_S)
    assert isinstance(state, Ready)
    assert imported(state.path, "mybundle")[0] == "bundled"
    assert imported(state.path, "faas_testpkg")[0] == "2.0"
    only = envs.wait(EnvSpec(bundles=(bundle,)), TIMEOUT_S)
    assert isinstance(only, Ready) and (only.path / "helper.py").is_file()
    assert envs.pip_runs == 1  # a bundle alone needs no pip


def test_missing_package_fails_is_cached_then_retried(
    tmp_path: Path, wheelhouse: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    envs = offline(tmp_path, wheelhouse, failure_ttl_s=30.0)
    spec = EnvSpec(("faas_missing_pkg==1.0",))
    state = envs.wait(spec, TIMEOUT_S)
    assert isinstance(state, Failed)
    assert "pip exited with code 1" in state.message
    assert "No matching distribution found for faas_missing_pkg==1.0" in state.message
    assert "\n" not in state.message and len(state.message) < 2600
    assert envs.request(spec) == state and envs.pip_runs == 1  # cached: no second pip
    assert [p.name for p in envs.root.iterdir() if spec.key in p.name] == [f"{spec.key}.lock"]
    later = environments._monotonic() + 31.0
    monkeypatch.setattr(environments, "_monotonic", lambda: later)
    assert isinstance(envs.request(spec), Pending)  # past the TTL: retried
    assert isinstance(envs.wait(spec, TIMEOUT_S), Failed) and envs.pip_runs == 2


def test_pip_timeout_fails_and_kills_pip(tmp_path: Path, wheelhouse: Path) -> None:
    envs = offline(tmp_path, wheelhouse, pip_timeout_s=0.05)  # pip alone takes longer to start
    state = envs.wait(EnvSpec(("faas_testpkg==1.0",)), TIMEOUT_S)
    assert isinstance(state, Failed) and "pip timed out after 0.05 s" in state.message
    assert not envs._pips  # reaped
    assert [p.name for p in envs.root.iterdir() if p.name.startswith(".tmp-")] == []


def test_close_stops_installs(tmp_path: Path, wheelhouse: Path) -> None:
    envs = offline(tmp_path, wheelhouse)
    spec = EnvSpec(("faas_testpkg==1.0",))
    with open(envs.root / f"{spec.key}.lock", "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the install waits here, then finds us closed
        assert isinstance(envs.request(spec), Pending)
        envs.close()
    state = envs.wait(spec, TIMEOUT_S)
    assert isinstance(state, Failed) and "shut down" in state.message and envs.pip_runs == 0
    assert envs.request(EnvSpec(("faas_testpkg==2.0",))) == Failed("environments are shut down")


@pytest.mark.parametrize(
    "requirement", ["--index-url=http://x", "a\nb", " -r /etc/passwd", "", "six\r", "x" * 501]
)
def test_requirement_injection_is_rejected(requirement: str) -> None:
    with pytest.raises(ValueError, match="requirement"):
        EnvSpec((requirement,))


def test_zip_slip_and_bad_zips_fail(tmp_path: Path, wheelhouse: Path) -> None:
    envs = offline(tmp_path / "envs", wheelhouse)
    for entries in ({"../evil.py": "x"}, {"ok/../../evil.py": "x"}, {"/tmp/evil.py": "x"}):
        state = envs.wait(EnvSpec(bundles=(make_bundle(entries),)), TIMEOUT_S)
        assert isinstance(state, Failed) and "outside its directory" in state.message
    state = envs.wait(EnvSpec(bundles=(b"not a zip",)), TIMEOUT_S)
    assert isinstance(state, Failed) and "not a zip file" in state.message
    assert not (tmp_path / "evil.py").exists() and not (tmp_path / "envs" / "evil.py").exists()
    assert [p.name for p in envs.root.iterdir() if p.is_dir()] == [EnvSpec().key]


def test_empty_spec_is_ready_at_once_and_incomplete_dirs_are_redone(
    tmp_path: Path, wheelhouse: Path
) -> None:
    envs = offline(tmp_path, wheelhouse)
    empty = envs.request(EnvSpec())
    assert isinstance(empty, Ready) and empty.path.is_dir()
    spec = EnvSpec(bundles=(make_bundle({"fresh.py": ""}),))
    (envs.root / spec.key).mkdir()  # e.g. copied by hand, or a marker lost
    (envs.root / spec.key / "stale.py").write_text("")
    state = envs.wait(spec, TIMEOUT_S)
    assert isinstance(state, Ready)
    assert sorted(p.name for p in state.path.iterdir()) == [".faas-env-complete", "fresh.py"]


def test_key_is_stable_and_normalized() -> None:
    a = EnvSpec(("six==1.16.0", "faas_testpkg==1.0"))
    b = EnvSpec(["faas_testpkg==1.0", " six==1.16.0 ", "six==1.16.0"])  # type: ignore[arg-type]
    assert a.key == b.key
    assert EnvSpec(("six==1.16.0",)).key != a.key
    code = "from worker.environments import EnvSpec; print(EnvSpec(('six==1.16.0', 'faas_testpkg==1.0')).key)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         timeout=TIMEOUT_S, check=True)  # fmt: skip
    assert out.stdout.strip() == a.key


def trash(envs: Environments) -> list[str]:
    return [p.name for p in envs.root.iterdir() if p.name.startswith((".trash-", ".tmp-"))]


def test_a_cap_that_fits_one_env_evicts_the_older_and_it_installs_again(
    tmp_path: Path, wheelhouse: Path
) -> None:
    one, two = EnvSpec(("faas_testpkg==1.0",)), EnvSpec(("faas_testpkg==2.0",))
    first = offline(tmp_path, wheelhouse)  # a worker with no cap, sharing the directory
    assert isinstance(first.wait(one, TIMEOUT_S), Ready)
    size = first.disk_usage(one.key)
    recorded = json.loads((first.root / one.key / environments.MARKER).read_text())["bytes"]
    assert 0 < recorded <= size  # measured once, at install
    assert (first.root / f"{one.key}.lock").stat().st_mode & 0o777 == 0o600  # not for slots
    capped = offline(tmp_path, wheelhouse, max_bytes=size * 3 // 2)
    assert isinstance(capped.wait(two, TIMEOUT_S), Ready)
    assert not (first.root / one.key).exists() and capped.evictions == 1
    assert (capped.root / two.key / environments.MARKER).is_file() and trash(capped) == []
    # `first` still has `one` as Ready: acquiring it finds it gone, and it installs again
    assert not first.acquire(one.key)
    assert isinstance(first.request(one), Pending)
    state = first.wait(one, TIMEOUT_S)
    assert isinstance(state, Ready) and first.pip_runs == 2
    assert first.acquire(one.key) and imported(state.path, "faas_testpkg")[0] == "1.0"
    first.release(one.key)


def test_the_least_recently_used_env_goes_first(tmp_path: Path, wheelhouse: Path) -> None:
    probe = offline(tmp_path / "probe", wheelhouse)
    a, b = EnvSpec(("faas_testpkg==1.0",)), EnvSpec(("faas_testpkg==2.0",))
    assert isinstance(probe.wait(a, TIMEOUT_S), Ready)
    envs = offline(tmp_path / "envs", wheelhouse, max_bytes=probe.disk_usage(a.key) * 5 // 2)
    state = envs.wait(a, TIMEOUT_S)
    assert isinstance(state, Ready) and isinstance(envs.wait(b, TIMEOUT_S), Ready)
    assert envs.acquire(a.key)  # a task uses `a` after `b` was installed
    assert imported(state.path, "faas_testpkg")[0] == "1.0"
    envs.release(a.key)
    c = EnvSpec(("faas_testpkg==1.0",), (make_bundle({"extra.py": ""}),))
    assert isinstance(envs.wait(c, TIMEOUT_S), Ready)
    assert (envs.root / a.key).is_dir() and not (envs.root / b.key).exists()
    assert envs.evictions == 1


def test_an_env_in_use_here_or_by_another_worker_is_not_evicted(
    tmp_path: Path, wheelhouse: Path
) -> None:
    envs = offline(tmp_path, wheelhouse, max_bytes=1)  # fits nothing but the newest
    one, two = EnvSpec(("faas_testpkg==1.0",)), EnvSpec(("faas_testpkg==2.0",))
    three = EnvSpec(("faas_testpkg==1.0",), (make_bundle({"extra.py": ""}),))
    state = envs.wait(one, TIMEOUT_S)
    assert isinstance(state, Ready) and envs.acquire(one.key)  # a task runs in `one`
    assert isinstance(envs.wait(two, TIMEOUT_S), Ready)
    assert (envs.root / one.key / environments.MARKER).is_file() and envs.evictions == 0
    assert imported(state.path, "faas_testpkg")[0] == "1.0"  # still whole
    envs.release(one.key)
    # Another worker on the host runs a task in `two`: its shared lock on the lock file.
    with open(envs.root / f"{two.key}.lock", "a+b") as other:
        fcntl.flock(other, fcntl.LOCK_SH)
        assert isinstance(envs.wait(three, TIMEOUT_S), Ready)
        assert not (envs.root / one.key).exists() and (envs.root / two.key).is_dir()
    assert envs.evictions == 1 and trash(envs) == []
    # Being installed (the installer's exclusive lock) is in use too.
    with open(envs.root / f"{two.key}.lock", "a+b") as installer:
        fcntl.flock(installer, fcntl.LOCK_EX)
        assert not envs.acquire(two.key)  # nor may a task start in it meanwhile
        envs._evict(keep=three.key)
        assert (envs.root / two.key).is_dir()
    envs._evict(keep=three.key)
    assert not (envs.root / two.key).exists() and (envs.root / three.key).is_dir()
