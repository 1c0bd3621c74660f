"""Spectra on a log axis: the change of variables keeps the mass, the histogram its share."""

from __future__ import annotations

import numpy as np

from toolkit.isometry._plotting import log_histogram, to_log_axis


def test_log_axis_preserves_mass_of_a_known_density():
    x = np.linspace(1e-4, 5, 20001)
    rho = np.exp(-x)  # Exp(1): almost all its mass lies on (1e-4, 5]
    u, rho_u = to_log_axis(x, rho)
    assert abs(np.trapezoid(rho_u, u) - np.trapezoid(rho, x)) < 1e-3


def test_log_histogram_drops_zeros_and_reports_the_share():
    rng = np.random.default_rng(0)
    values = np.concatenate([np.zeros(500), rng.lognormal(0.0, 1.0, 1500)])
    centres, heights, widths, fraction = log_histogram(values, bins=40)
    assert fraction == 0.75
    assert abs(np.sum(heights * widths) - 0.75) < 1e-12
    # log10 of a lognormal(0, 1) is normal with sd 1/ln 10: the histogram peaks near 0.
    assert abs(centres[np.argmax(heights)]) < 0.2
    assert log_histogram(np.zeros(3))[3] == 0.0
