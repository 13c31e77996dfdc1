import os
import stat

import pytest

from edge.fileio import write_atomic


def test_write_atomic_replaces_whole_file_and_leaves_no_temporaries(tmp_path):
    target = tmp_path / "sub" / "m.engine"
    write_atomic(target, b"first")
    write_atomic(target, b"second version")
    assert target.read_bytes() == b"second version"
    assert [p.name for p in target.parent.iterdir()] == ["m.engine"]


def test_a_failed_write_keeps_the_old_file_and_removes_the_temporary(tmp_path):
    target = tmp_path / "pair.wav"
    write_atomic(target, b"taught")

    def half_then_fail(f):
        f.write(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomic(target, half_then_fail)
    assert target.read_bytes() == b"taught"
    assert [p.name for p in tmp_path.iterdir()] == ["pair.wav"]


def test_mode_is_applied(tmp_path):
    target = write_atomic(tmp_path / "answer.jpg", lambda f: f.write(b"jpeg"), mode=0o644)
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o644
    assert target.read_bytes() == b"jpeg"
