"""Checkpoint writes that fail. Onto a full file system (a real tmpfs mounted small; skipped
where mounting is not allowed): the error names the checkpoint file and the out-of-space
cause (torch's own message says neither), no temporary file or orphan .toml is left, and the
previous checkpoint still loads. A writer killed mid-write: its temporary file is removed by
the next save's pruning."""
import subprocess
from pathlib import Path

import pytest
import torch

from hpcsgd.run.checkpoint import (CheckpointError, load_checkpoint, prune_checkpoints,
                                   save_checkpoint, set_aside_damaged, step_checkpoints)


@pytest.fixture
def small_fs(tmp_path):
    mount = tmp_path / "fs"
    mount.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)],
                         capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_a_write_that_runs_out_of_space_names_the_file_and_keeps_the_previous(small_fs):
    previous = small_fs / "step_00000008.pt"
    save_checkpoint(previous, {"model": {"w": torch.ones(1000)}}, "[train]\n")
    path = small_fs / "step_00000016.pt"
    with pytest.raises(CheckpointError) as failed:  # 1.2 MB of tensors, 256 KiB of space
        save_checkpoint(path, {"model": {"w": torch.ones(300_000)}}, "[train]\n")
    message = str(failed.value)
    assert str(path) in message and "No space left on device" in message
    assert sorted(p.name for p in small_fs.iterdir()) == ["step_00000008.pt",
                                                          "step_00000008.toml"]
    assert torch.equal(load_checkpoint(previous)["model"]["w"], torch.ones(1000))


def test_pruning_removes_what_a_killed_writer_left(tmp_path):
    """A writer SIGKILLed between its temporary file and the rename leaves the file (it never
    reaches its cleanup); the next save's pruning removes it, and keeps the checkpoints."""
    left = [tmp_path / ".step_00000016.pt.tmp4242", tmp_path / ".step_00000016.toml.tmp4242"]
    for path in left:
        path.write_bytes(b"PK\x03\x04 half a checkpoint")
    for step in (8, 24):
        save_checkpoint(tmp_path / f"step_{step:08d}.pt", {"model": {}}, "[train]\n")
    prune_checkpoints(tmp_path, keep=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "step_00000008.pt", "step_00000008.toml", "step_00000024.pt", "step_00000024.toml"]


def test_a_damaged_checkpoint_set_aside_is_kept_whole_and_out_of_the_runs_checkpoints(tmp_path):
    """Set aside into damaged/ (with its .toml), never overwritten there: the second damaged
    step 24 (another resume's) gets a name of its own. Pruning and resuming no longer see them."""
    for step in (8, 16, 24):
        save_checkpoint(tmp_path / f"step_{step:08d}.pt", {"model": {}}, "[train]\n")
    damaged = tmp_path / "step_00000024.pt"
    damaged.write_bytes(b"PK first damage")
    assert set_aside_damaged(damaged) == tmp_path / "damaged" / "step_00000024.pt"
    damaged.write_bytes(b"PK second damage")  # saved again, damaged again
    second = set_aside_damaged(damaged)
    assert second == tmp_path / "damaged" / "step_00000024.2.pt"
    assert (tmp_path / "damaged" / "step_00000024.pt").read_bytes() == b"PK first damage"
    assert second.read_bytes() == b"PK second damage"
    assert sorted(p.name for p in (tmp_path / "damaged").iterdir()) == [
        "step_00000024.2.pt", "step_00000024.pt", "step_00000024.toml"]  # the 2nd had no .toml
    assert [p.name for p in step_checkpoints(tmp_path)] == ["step_00000016.pt", "step_00000008.pt"]
    prune_checkpoints(tmp_path, keep=1)
    assert [p.name for p in step_checkpoints(tmp_path)] == ["step_00000016.pt"]


def test_a_damaged_checkpoint_that_cannot_be_set_aside_is_left_and_the_run_resumes(tmp_path, capsys):
    """The move is housekeeping: when it fails (here damaged/ is a file; on a failing disk the
    rename itself may fail) rank 0 warns, leaves the file in place and resumes as before,
    rather than dying before its collective and leaving the other ranks to the watchdog."""
    from hpcsgd.config import Config
    from hpcsgd.run.metrics import MetricsLog, read_metrics
    from hpcsgd.run.trainer import _resume_choice
    cfg = Config()
    cfg.run.out_dir, cfg.run.name, cfg.checkpoint.resume = str(tmp_path), "r", "auto"
    folder = cfg.run_dir / "checkpoints"
    folder.mkdir(parents=True)
    save_checkpoint(folder / "step_00000008.pt", {"model": {}}, "[train]\n")
    (folder / "step_00000016.pt").write_bytes(b"PK damaged")
    (folder / "damaged").write_text("a file where the folder would go")
    path, state = _resume_choice(cfg, MetricsLog(cfg.run_dir / "metrics.jsonl"))
    assert path == folder / "step_00000008.pt" and "model" in state
    assert (folder / "step_00000016.pt").read_bytes() == b"PK damaged"
    err = capsys.readouterr().err
    assert f"{str(folder / 'step_00000016.pt')!r} could not be set aside" in err
    assert "left in place" in err
    assert read_metrics(cfg.run_dir / "metrics.jsonl", "checkpoint_set_aside") == []


def test_a_checkpoint_whose_toml_cannot_follow_it_is_moved_back(tmp_path, monkeypatch):
    """The .pt moved, then its .toml refused: the .pt comes back, so the pair stays together
    in place and the caller's "left in place" is true. The refusal is simulated (a patched
    Path.replace): a file system that refuses one rename and allows the next cannot be
    arranged here."""
    pt, toml = tmp_path / "step_00000016.pt", tmp_path / "step_00000016.toml"
    pt.write_bytes(b"PK damaged")
    toml.write_text("[train]\n")
    real = Path.replace

    def refuse_toml(self, target):
        if self.suffix == ".toml":
            raise PermissionError(13, "refused", str(self))
        return real(self, target)
    monkeypatch.setattr(Path, "replace", refuse_toml)
    with pytest.raises(PermissionError):
        set_aside_damaged(pt)
    assert pt.read_bytes() == b"PK damaged" and toml.read_text() == "[train]\n"
    assert list((tmp_path / "damaged").iterdir()) == []


def test_a_pair_that_can_neither_move_nor_come_back_says_where_each_file_is(tmp_path, monkeypatch):
    """The .toml refused and the .pt's move back refused too (simulated, as above): the error
    names where the .pt went and why each rename failed, since the pair is now split."""
    pt, toml = tmp_path / "step_00000016.pt", tmp_path / "step_00000016.toml"
    pt.write_bytes(b"PK damaged")
    toml.write_text("[train]\n")
    real = Path.replace

    def refuse(self, target):
        if self.suffix == ".toml" or self.parent.name == "damaged":  # the .toml; the move back
            raise PermissionError(13, "refused", str(self))
        return real(self, target)
    monkeypatch.setattr(Path, "replace", refuse)
    with pytest.raises(OSError, match=r"step_00000016.pt moved to .*damaged/step_00000016.pt, "
                                      r"but step_00000016.toml was refused .* and the move back too"):
        set_aside_damaged(pt)
    assert (tmp_path / "damaged" / "step_00000016.pt").read_bytes() == b"PK damaged"
    assert toml.read_text() == "[train]\n" and not pt.exists()
