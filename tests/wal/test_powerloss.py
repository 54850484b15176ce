"""The power-loss layer itself: what it keeps must be what fsync promised, and no more."""

from __future__ import annotations

import os
import random

import pytest

from wal.powerloss import LossPolicy, PowerLossFileSystem, SimulatedPowerCut


def make(tmp_path):
    directory = tmp_path / "d"
    directory.mkdir()
    (directory / "old").write_bytes(b"existing")
    return directory, PowerLossFileSystem(directory)


def test_synced_bytes_survive_and_unsynced_ones_are_lost(tmp_path):
    directory, fs = make(tmp_path)
    fd = fs.open(directory / "old", os.O_WRONLY)
    fs.pwrite(fd, b"SYNCED", 0)
    fs.fdatasync(fd)
    fs.pwrite(fd, b"later!", 8)
    fs.close(fd)
    assert (directory / "old").read_bytes() == b"SYNCEDnglater!"
    fs.apply_power_loss(random.Random(1), LossPolicy.LOSE)
    assert (directory / "old").read_bytes() == b"SYNCEDng"


def test_keep_is_a_process_crash_everything_written_stays(tmp_path):
    directory, fs = make(tmp_path)
    fd = fs.open(directory / "old", os.O_WRONLY)
    fs.pwrite(fd, b"!", 8)
    fs.ftruncate(fd, 4)
    fs.apply_power_loss(random.Random(1), LossPolicy.KEEP)
    assert (directory / "old").read_bytes() == b"exis"


def test_a_new_file_needs_a_directory_fsync_and_a_rename_too(tmp_path):
    directory, fs = make(tmp_path)
    fd = fs.open(directory / "new.tmp", os.O_WRONLY | os.O_CREAT)
    fs.pwrite(fd, b"header", 0)
    fs.fsync(fd)
    fs.rename(directory / "new.tmp", directory / "new")
    fs.apply_power_loss(random.Random(1), LossPolicy.KEEP)
    assert sorted(p.name for p in directory.iterdir()) == ["old"]

    directory2 = tmp_path / "e"
    directory2.mkdir()
    fs = PowerLossFileSystem(directory2)
    fd = fs.open(directory2 / "new.tmp", os.O_WRONLY | os.O_CREAT)
    fs.pwrite(fd, b"header", 0)
    fs.fsync(fd)
    fs.rename(directory2 / "new.tmp", directory2 / "new")
    fs.fsync_dir(directory2)
    fs.apply_power_loss(random.Random(1), LossPolicy.LOSE)
    assert (directory2 / "new").read_bytes() == b"header"
    assert not (directory2 / "new.tmp").exists()


@pytest.mark.parametrize("policy", [LossPolicy.TRUNCATE, LossPolicy.GARBLE, LossPolicy.TORN])
def test_damage_stays_inside_the_unsynced_region(tmp_path, policy):
    for seed in range(30):
        directory = tmp_path / f"{policy}-{seed}"
        directory.mkdir()
        (directory / "f").write_bytes(b"D" * 1500)
        fs = PowerLossFileSystem(directory)
        fd = fs.open(directory / "f", os.O_WRONLY)
        fs.pwrite(fd, b"N" * 1000, 1500)
        assert fs.unsynced_ranges() == {"f": [(1500, 2500)]}
        fs.apply_power_loss(random.Random(seed), policy)
        data = (directory / "f").read_bytes()
        assert data[:1500] == b"D" * 1500
        assert len(data) <= 2500


def test_the_power_goes_off_at_the_chosen_call_and_stays_off(tmp_path):
    directory, fs = make(tmp_path)
    fd = fs.open(directory / "old", os.O_WRONLY)
    fs.cut_power_at("fdatasync")
    fs.pwrite(fd, b"x", 0)
    with pytest.raises(SimulatedPowerCut):
        fs.fdatasync(fd)
    with pytest.raises(SimulatedPowerCut):
        fs.pwrite(fd, b"y", 1)
    fs.close(fd)
    fs2 = PowerLossFileSystem(directory)
    fs2.cut_power_after(1)
    fd = fs2.open(directory / "old", os.O_RDONLY)
    with pytest.raises(SimulatedPowerCut):
        fs2.fsync(fd)
    fs2.close(fd)
