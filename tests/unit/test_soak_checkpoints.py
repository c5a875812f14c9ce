"""tools/soak/checkpoints.py on real checkpoint files written by hpcsgd's save_checkpoint:
what a killed writer can leave (a temporary file), a torn step file, the truncation fault."""
import random

import torch

from hpcsgd.run.checkpoint import checkpoint_path, save_checkpoint
from tools.soak.checkpoints import checkpoints_sound, inspect_checkpoints, truncate_newest


def _save(folder, step):
    save_checkpoint(checkpoint_path(folder, step), {"model": {"w": torch.full((100,), step)}},
                    "[train]\n")


def test_a_stray_temporary_file_is_reported_and_never_chosen(tmp_path):
    _save(tmp_path, 8)
    (tmp_path / ".step_00000016.pt.tmp4242").write_bytes(b"PK\x03\x04 half a checkpoint")
    view = inspect_checkpoints(tmp_path)
    assert view == {"files": ["step_00000008.pt"], "torn": [],
                    "stray_tmp": [".step_00000016.pt.tmp4242"], "newest_loads": True,
                    "auto_choice": "step_00000008.pt"}
    assert checkpoints_sound(view)


def test_a_torn_step_file_is_found(tmp_path):
    _save(tmp_path, 8)
    checkpoint_path(tmp_path, 16).write_bytes(b"PK\x03\x04 torn")
    view = inspect_checkpoints(tmp_path)
    assert view["torn"] == ["step_00000016.pt"] and not view["newest_loads"]
    assert view["auto_choice"] == "step_00000008.pt" and not checkpoints_sound(view)
    assert inspect_checkpoints(tmp_path / "none") == {
        "files": [], "torn": [], "stray_tmp": [], "newest_loads": False, "auto_choice": None}


def test_truncate_cuts_the_newest_and_names_the_one_before(tmp_path):
    _save(tmp_path, 8)
    _save(tmp_path, 16)
    cut = truncate_newest(tmp_path, random.Random(0))
    newest = checkpoint_path(tmp_path, 16)
    assert cut["truncated"] == str(newest) and cut["previous"] == str(checkpoint_path(tmp_path, 8))
    assert newest.stat().st_size == cut["cut_to"] < cut["size"]
    assert inspect_checkpoints(tmp_path)["torn"] == ["step_00000016.pt"]
