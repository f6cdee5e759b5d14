from __future__ import annotations

from pathlib import Path

from common.hardening import unreadable_by


def test_a_path_is_unreadable_if_any_directory_on_the_way_is_closed(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    open_dir, closed_dir = tmp_path / "open", tmp_path / "closed"
    for d in (open_dir, closed_dir):
        d.mkdir(mode=0o755)
        (d / "mod.py").write_text("")
    closed_dir.chmod(0o700)
    other = 65534
    paths = [str(open_dir / "mod.py"), str(closed_dir / "mod.py"), str(closed_dir)]
    assert unreadable_by(other, other, paths) == paths[1:]
    (open_dir / "mod.py").chmod(0o600)
    assert unreadable_by(other, other, paths[:1]) == paths[:1]
    # its owner reads it whatever the others' bits
    st = (open_dir / "mod.py").stat()
    assert unreadable_by(st.st_uid, st.st_gid, paths[:1]) == []
