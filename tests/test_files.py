"""Atomic writes respect the umask: a new file gets ``0666 & ~umask`` (not mkstemp's 0600), a
replaced file keeps its mode, a directory moved into place gets ``0777 & ~umask``."""

from __future__ import annotations

import os
import stat
import tempfile

import pytest

from informer.files import atomic_write_json, atomic_write_text, replace_path


@pytest.fixture
def set_umask():
    saved = os.umask(0o022)
    os.umask(saved)

    def set_to(mask: int) -> None:
        os.umask(mask)

    yield set_to
    os.umask(saved)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize(("mask", "expected"), [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_new_files_get_the_umask_mode(tmp_path, set_umask, mask, expected):
    set_umask(mask)
    assert mode(atomic_write_text(tmp_path / "forecast.csv", "date,OT\n")) == expected
    assert mode(atomic_write_json(tmp_path / "metrics.json", {"mse": 0.4})) == expected
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_a_replaced_file_keeps_its_mode(tmp_path, set_umask):
    set_umask(0o022)
    target = tmp_path / "dashboard.html"
    target.write_text("old")
    os.chmod(target, 0o640)
    atomic_write_text(target, "new")
    assert target.read_text() == "new" and mode(target) == 0o640


def test_a_directory_moved_into_place_gets_the_umask_mode(tmp_path, set_umask):
    set_umask(0o022)
    for round_ in range(2):  # a new target, then one that is replaced
        built = tempfile.mkdtemp(prefix=".model.", dir=tmp_path)  # mode 0700
        atomic_write_text(os.path.join(built, "weights.pt"), str(round_))
        replace_path(built, tmp_path / "model")
        assert mode(tmp_path / "model") == 0o755
        assert mode(tmp_path / "model" / "weights.pt") == 0o644
        assert (tmp_path / "model" / "weights.pt").read_text() == str(round_)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
