"""Atomic writes: flushed to disk before and after the rename, with the umask's mode."""

import os
import stat

from keras_resnet.trainer import io


def test_a_write_syncs_the_file_before_the_rename_and_the_folder_after(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(
        os, "fsync", lambda fd: events.append(os.readlink(f"/proc/self/fd/{fd}")) or real_fsync(fd)
    )
    monkeypatch.setattr(
        os, "replace", lambda a, b: events.append(("replace", str(b))) or real_replace(a, b)
    )
    io.write_json(tmp_path / "state.json", {"a": 1})
    tmp, rename, folder = events
    assert os.path.basename(tmp).startswith(".state-") and tmp.endswith(".json")
    assert rename == ("replace", str(tmp_path / "state.json"))
    assert folder == str(tmp_path)


def test_a_written_file_gets_the_mode_a_plain_open_would(tmp_path):
    old = os.umask(0o002)
    try:
        io.write_text(tmp_path / "a.txt", "x")
        with open(tmp_path / "b.txt", "w") as f:
            f.write("x")
    finally:
        os.umask(old)
    mode = stat.S_IMODE((tmp_path / "a.txt").stat().st_mode)
    assert mode == stat.S_IMODE((tmp_path / "b.txt").stat().st_mode) == 0o664
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.txt"]
