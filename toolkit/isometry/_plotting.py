"""Spectra on a logarithmic eigenvalue axis, for the explorer and the report.

Deep networks spread the eigenvalues of :math:`JJ^T` over orders of magnitude and pile mass up
near 0, where a linear axis shows one spike.  On :math:`u = \\log_{10}\\lambda` the density
becomes :math:`\\rho_u(u) = \\rho(\\lambda)\\,\\lambda \\ln 10`, which stays bounded and shows
the whole spectrum; sampled eigenvalues are histogrammed on the same axis.
"""

from __future__ import annotations

import numpy as np

__all__ = ["log_histogram", "to_log_axis"]


def to_log_axis(x: np.ndarray, density: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(log10 x, density of log10 λ)`` for the positive grid points."""
    x, density = np.asarray(x, dtype=float), np.asarray(density, dtype=float)
    keep = x > 0
    return np.log10(x[keep]), density[keep] * x[keep] * np.log(10.0)


def log_histogram(
    eigenvalues: np.ndarray, bins: int = 60, floor: float = 1e-12
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Bin centres, densities and widths of ``log10`` of the eigenvalues above ``floor``.

    Eigenvalues at or below ``floor`` (exact zeros of rank-deficient Jacobians) are left out;
    the returned ``fraction`` says what share of the eigenvalues the histogram holds.
    """
    values = np.asarray(eigenvalues, dtype=float).ravel()
    positive = values[values > floor]
    fraction = positive.size / max(values.size, 1)
    if positive.size == 0:
        return np.array([]), np.array([]), np.array([]), 0.0
    counts, edges = np.histogram(np.log10(positive), bins=bins, density=True)
    return (edges[:-1] + edges[1:]) / 2, counts * fraction, np.diff(edges), fraction
