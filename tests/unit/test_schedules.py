import pytest

from hpcsgd.config import ScheduleConfig
from hpcsgd.schedules import lr_at


def test_goyal_warmup_then_multistep():
    # Goyal et al.: batch 8192, warmup 0.1 -> 3.2 over 5 epochs, x0.1 at 30, 60, 80
    cfg = ScheduleConfig(warmup_epochs=5, warmup_start_lr=0.1, decay="multistep",
                         milestones=[30, 60, 80], gamma=0.1)
    lr = lambda e: lr_at(e, cfg, base_lr=3.2, total_epochs=90)  # noqa: E731
    assert lr(0) == pytest.approx(0.1)      # epoch 0: start of warmup
    assert lr(2.5) == pytest.approx(1.65)   # halfway: 0.1 + 3.1 / 2
    assert lr(5) == pytest.approx(3.2)      # end of warmup: peak
    assert lr(29.99) == pytest.approx(3.2)
    assert lr(30) == pytest.approx(0.32)
    assert lr(60) == pytest.approx(0.032)
    assert lr(85) == pytest.approx(0.0032)


def test_codreanu_linear_decay_reaches_zero_at_the_end():
    cfg = ScheduleConfig(warmup_epochs=5, warmup_start_lr=0.0, decay="poly", power=1)
    lr = lambda e: lr_at(e, cfg, base_lr=8.0, total_epochs=45)  # noqa: E731
    assert lr(5) == pytest.approx(8.0)      # peak after warmup
    assert lr(25) == pytest.approx(4.0)     # halfway through decay
    assert lr(45) == pytest.approx(0.0)


def test_cosine_and_constant():
    cos = ScheduleConfig(decay="cosine")
    assert lr_at(5, cos, base_lr=1.0, total_epochs=10) == pytest.approx(0.5)
    assert lr_at(3, ScheduleConfig(decay="constant"), base_lr=0.7, total_epochs=10) == 0.7
