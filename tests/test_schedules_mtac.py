"""Ramp weights (MTAC eqs 14-15) and the template weight (MTAC eq 10); epochs 0-based."""
import math

import pytest

from ufer.methods.schedules import ramp_lambda1, ramp_lambda2, template_weight


@pytest.mark.parametrize(
    ("paper_epoch", "lambda1", "lambda2"),
    [
        (1, 0.5272924, 1.0),  # exp(-(1 - 1/5)^2) = exp(-0.64)
        (5, 1.0, 1.0),  # beta = H: exp(-0) = 1 and 1
        (6, 1.0, 0.9726045),  # exp(-(1 - 5/6)^2) = exp(-1/36)
        (10, 1.0, 0.7788008),  # beta = 2H: exp(-(1 - 1/2)^2) = exp(-0.25)
    ],
)
def test_ramps_mtac(paper_epoch, lambda1, lambda2):
    epoch = paper_epoch - 1  # 0-based argument
    assert ramp_lambda1(epoch, 5) == pytest.approx(lambda1, abs=1e-6)
    assert ramp_lambda2(epoch, 5) == pytest.approx(lambda2, abs=1e-6)


def test_template_weight_mtac():
    assert template_weight(0) == 1.0
    assert template_weight(1) == pytest.approx(math.exp(-0.9))  # 0.4066
    # h = 6: exp(-5.4) = 0.0045 < 0.01 -> the floor
    assert template_weight(6) == 0.01
    assert template_weight(6, w_min=0.0) == pytest.approx(0.0045166, abs=1e-7)
