"""The affine maps a consumer's kept channels are refitted with, and their error on held-out data.

A consumer's original input x (C channels) is modelled from what the pruned model really gives
it, x' (its K kept channels), as x ≈ M·x' + m. The statistics are sums over positions (and
samples) of the joint vector [x; x'] with its Gram matrix (`PairStats`, a `ChannelStats` over
C + K channels), so they stream and merge across batches.

`ridge_map` solves  min ‖X − M X' − m‖² + λ‖M − M0‖²  (intercept unpenalised) where M0 is the
uncompensated map (kept channel j to itself: M0[kept[j], j] = 1): regularising toward M0, not
toward zero, means a strong λ gives back the plain structural prune, never a shrunken layer.
λ = α · tr(Cov x') / K, so α is scale-free. `output_error` measures a map on other statistics
(the held-out ones) as the consumer's output error tr(P·R), P = Σ_t W_tᵀ W_t and R the second
moment of the residual x − M x' − m: exact for 1x1 kernels and Gemm/MatMul, the channel-space
part (cross-tap correlations ignored) for larger kernels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from onnxprune.stats import ChannelStats

# α grid of the ridge (0: plain least squares through a pseudo-inverse)
ALPHAS = (0.0, 1e-6, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)


@dataclass
class PairStats:
    """Sums over positions of [x; x'] (C original channels then K kept ones), Gram included.

    The sums are of the values minus `shift` (the first batch's mean): deep activations can have
    means far above their spread, and raw sums of squares would then lose the covariance to
    rounding. Merging re-expresses the other operand's sums around this one's shift."""

    channels: int
    stats: ChannelStats
    shift: np.ndarray

    @classmethod
    def of(cls, x: np.ndarray, xp: np.ndarray, rows: np.ndarray | None = None) -> PairStats:
        """From rows of x (P, C) and x' (P, K) at the same positions; `rows` selects some."""
        if rows is not None:
            x, xp = x[rows], xp[rows]
        joint = np.concatenate([x.astype(np.float64), xp.astype(np.float64)], axis=1)
        shift = joint.mean(axis=0) if len(joint) else np.zeros(joint.shape[1])
        return cls(x.shape[1], ChannelStats.of(joint - shift, axis=1, gram=True), shift)

    def merge(self, other: PairStats) -> PairStats:
        o = other.stats
        d = other.shift - self.shift  # other's values minus self.shift = (v - other.shift) + d
        total = o.sum + o.count * d
        gram = o.gram + np.outer(o.sum, d) + np.outer(d, o.sum) + o.count * np.outer(d, d)
        moved = ChannelStats(o.axis, o.count, total, o.sum_abs, np.diag(gram).copy(), gram)
        return PairStats(self.channels, self.stats.merge(moved), self.shift)

    def moments(self) -> tuple[np.ndarray, np.ndarray]:
        """(mean of [x; x'], covariance of [x; x'])."""
        centred = self.stats.mean
        cov = self.stats.gram / self.stats.count - np.outer(centred, centred)
        return self.shift + centred, cov


@dataclass(frozen=True)
class AffineMap:
    """x ≈ M·x' + m: M is C × K, m has C entries."""

    M: np.ndarray
    m: np.ndarray

    def is_identity_weight(self, m0: np.ndarray) -> bool:
        return bool(np.array_equal(self.M, m0))


def identity_map(channels: int, kept: np.ndarray) -> np.ndarray:
    """M0: the uncompensated map, each kept channel to itself (C × K)."""
    m0 = np.zeros((channels, len(kept)))
    m0[kept, np.arange(len(kept))] = 1.0
    return m0


def bias_map(channels: int, kept: np.ndarray, means: np.ndarray) -> AffineMap:
    """M0 with the removed channels' means as intercept (FLAP-style bias compensation)."""
    m = np.asarray(means, dtype=np.float64).copy()
    m[kept] = 0.0
    return AffineMap(identity_map(channels, kept), m)


def ridge_map(pair: PairStats, kept: np.ndarray, alpha: float) -> AffineMap:
    """The ridge fit toward M0 of x on x' from `pair`, λ = α·tr(Cov x')/K."""
    c = pair.channels
    mean, cov = pair.moments()
    cxz, czz = cov[:c, c:], cov[c:, c:]
    k = czz.shape[0]
    m0 = identity_map(c, kept)
    if alpha == 0.0:
        M = cxz @ np.linalg.pinv(czz, rcond=1e-7, hermitian=True)
    else:
        lam = alpha * max(float(np.trace(czz)) / k, 1e-30)
        M = np.linalg.solve(czz + lam * np.eye(k), (cxz + lam * m0).T).T
    return AffineMap(M, mean[:c] - M @ mean[c:])


def tap_weighting(w3: np.ndarray, scale: float = 1.0, cover: np.ndarray | None = None) -> np.ndarray:
    """P = scale² · Σ_t cov_t W_tᵀ W_t (C × C) of a weight W3[o, c, t] (cov: `taps.coverage`)."""
    weighted = w3 if cover is None else w3 * cover[None, None, :]
    return scale * scale * np.einsum("oct,odt->cd", weighted, w3)


def output_error(pair: PairStats, affine: AffineMap, weighting: np.ndarray) -> tuple[float, float]:
    """(tr(P·R), tr(P·E[x xᵀ])): the map's output error on `pair` and the output's energy.

    R is computed from centred moments (covariance part plus the squared mean residual), so
    activations with large means do not cancel catastrophically; a map with non-finite entries
    scores infinity."""
    if not (np.isfinite(affine.M).all() and np.isfinite(affine.m).all()):
        return float("inf"), 1.0
    c = pair.channels
    mean, cov = pair.moments()
    cxx, cxz, czz = cov[:c, :c], cov[:c, c:], cov[c:, c:]
    M = affine.M
    cross = cxz @ M.T
    resid = cxx - cross - cross.T + M @ czz @ M.T
    drift = mean[:c] - M @ mean[c:] - affine.m
    error = float(np.sum(weighting * resid)) + float(drift @ weighting @ drift)
    energy = float(np.sum(weighting * cxx)) + float(mean[:c] @ weighting @ mean[:c])
    return max(error, 0.0), energy
