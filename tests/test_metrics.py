"""Point metrics from sums: exact over batches, and percentage errors in original units only
where the true value is a safe denominator."""

from __future__ import annotations

import math

import pytest
import torch

from informer.metrics import N_SUMS, error_sums, metrics_from_sums, percentage_floor


def test_percentage_errors_skip_near_zero_denominators():
    """One true value of 1e-6 made MAPE about 10^5 (the 1072804 of issue 27); with the floor it
    is left out and MAPE/MSPE are those of the other values; MAE/MSE still count every value."""
    true = torch.tensor([[[10.0, 100.0], [1e-6, 50.0], [20.0, -80.0]]])
    pred = true + torch.tensor([[[1.0, 10.0], [0.2, 5.0], [2.0, 8.0]]])
    unsafe = metrics_from_sums(error_sums(pred, true), "_original")
    assert unsafe["mape_original"] > 1e4  # the old figure: meaningless
    floor = percentage_floor([4.0, 30.0])  # a tenth of each variable's std: 0.4 and 3.0
    assert floor.tolist() == pytest.approx([0.4, 3.0])
    safe = metrics_from_sums(error_sums(pred, true, floor), "_original")
    assert safe["mape_original"] == pytest.approx(0.1)  # five values, each 10% off
    assert safe["mspe_original"] == pytest.approx(0.01)
    assert safe["mae_original"] == unsafe["mae_original"] == pytest.approx(26.2 / 6)
    assert safe["mse_original"] == unsafe["mse_original"]


def test_sums_add_up_over_batches_and_processes():
    torch.manual_seed(0)
    true, pred = torch.randn(8, 5, 3), torch.randn(8, 5, 3)
    floor = percentage_floor([0.5, 1.0, 2.0])
    whole = error_sums(pred, true, floor)
    parts = error_sums(pred[:3], true[:3], floor) + error_sums(pred[3:], true[3:], floor)
    assert whole.shape == (N_SUMS,) and torch.allclose(whole, parts, rtol=1e-12)
    assert metrics_from_sums(whole) == pytest.approx(metrics_from_sums(parts), rel=1e-12)


def test_no_safe_value_gives_nan_not_a_number_from_nothing():
    values = metrics_from_sums(error_sums(torch.ones(1, 2, 1), torch.zeros(1, 2, 1), 0.1))
    assert math.isnan(values["mape"]) and math.isnan(values["mspe"])
    assert values["mae"] == 1.0
