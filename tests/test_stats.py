"""Intervals reported in the results docs."""

import math

import pytest

from llmrl.stats import t975, t_interval, wilson_interval


def test_t_interval_uses_student_t_for_few_seeds():
    mean, low, high = t_interval([0.3, 0.4, 0.5])
    assert mean == pytest.approx(0.4)
    assert high - mean == pytest.approx(4.303 * 0.1 / math.sqrt(3))  # t(0.975, df=2), not z = 1.96
    assert t_interval([0.7]) == (0.7, 0.7, 0.7)


def test_t_quantiles_approach_the_normal_one():
    assert t975(1) == pytest.approx(12.706) and t975(200) == pytest.approx(1.972, abs=2e-3)


def test_wilson_interval_stays_inside_0_1():
    assert wilson_interval(0, 100)[0] == 0.0 and wilson_interval(100, 100)[1] == 1.0
