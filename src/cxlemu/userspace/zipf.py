"""Zipfian key sampling (Gray et al., "Quickly generating billion-record
synthetic databases", SIGMOD'94 — the generator YCSB uses) and a
scrambling bijection that spreads popular keys over the key space.

``ZipfSampler(n, theta)`` draws ranks 0..n-1 with P(rank k) ∝ 1/(k+1)^theta.
For 0 < theta < 1 it uses Gray's closed form with the generalised harmonic
number zeta(n, theta) (exact up to 10^7 keys, Euler-Maclaurin beyond);
for theta > 1 numpy's Zipf draws, redrawn when they exceed n.
"""

from __future__ import annotations

import math

import numpy as np

EXACT_LIMIT = 10_000_000


def zeta(n: int, theta: float) -> float:
    """sum_{i=1..n} 1 / i^theta."""
    if n <= EXACT_LIMIT:
        total = 0.0
        step = 1 << 20
        for s in range(1, n + 1, step):
            i = np.arange(s, min(n, s + step - 1) + 1, dtype=np.float64)
            total += float(np.sum(i ** -theta))
        return total
    head = zeta(EXACT_LIMIT, theta)
    a, b = EXACT_LIMIT, n
    # Euler-Maclaurin for the tail sum_{a+1..b}
    if abs(theta - 1.0) < 1e-12:
        integral = math.log(b / a)
    else:
        integral = (b ** (1 - theta) - a ** (1 - theta)) / (1 - theta)
    corr = (b ** -theta - a ** -theta) / 2 + theta / 12 * (a ** (-theta - 1) - b ** (-theta - 1))
    return head + integral + corr


class ZipfSampler:
    def __init__(self, n: int, theta: float):
        if n < 1:
            raise ValueError("zipf: need at least one key")
        if not (0 < theta < 1 or theta > 1):
            raise ValueError("zipf: alpha must be in (0, 1) or greater than 1")
        self.n = int(n)
        self.theta = float(theta)
        if theta < 1:
            self.zetan = zeta(self.n, theta)
            self.zeta2 = zeta(min(2, self.n), theta)
            self.alpha = 1.0 / (1.0 - theta)
            self.eta = (1 - (2.0 / self.n) ** (1 - theta)) / (1 - self.zeta2 / self.zetan) if self.n > 2 else 1.0

    def sample(self, k: int, rng: np.random.Generator) -> np.ndarray:
        if self.theta > 1:
            out = rng.zipf(self.theta, k) - 1
            bad = out >= self.n
            while bad.any():
                out[bad] = rng.zipf(self.theta, int(bad.sum())) - 1
                bad = out >= self.n
            return out.astype(np.int64)
        u = rng.random(k)
        uz = u * self.zetan
        out = (self.n * (self.eta * u - self.eta + 1) ** self.alpha).astype(np.int64)
        out = np.where(uz < 1.0, 0, np.where(uz < 1.0 + 0.5 ** self.theta, 1, out))
        return np.clip(out, 0, self.n - 1)

    def top_mass(self, k: int) -> float:
        """Probability mass of the k most popular ranks (exact for small k)."""
        k = min(k, self.n)
        if self.theta < 1:
            return zeta(k, self.theta) / self.zetan if k else 0.0
        return zeta(k, self.theta) / zeta(self.n, self.theta) if k else 0.0


def scramble(ranks: np.ndarray, n: int, seed: int = 0x9E3779B1) -> np.ndarray:
    """A bijection of 0..n-1: (rank * A + B) mod n with A coprime to n."""
    if n <= 1:
        return np.zeros_like(ranks)
    a = (seed % n) | 1
    while math.gcd(a, n) != 1:
        a += 2
    b = (seed >> 7) % n
    return (ranks.astype(np.int64) % n * a + b) % n if n < (1 << 31) else \
        ((ranks.astype(object) * a + b) % n).astype(np.int64)
