"""Butterfly factors and "butterfly implies Monarch" (Dao et al. 2022, Sec. 3.2 / Thm. 2; Dao et al.
2019 "Learning Fast Algorithms for Linear Transforms Using Butterfly Factorizations").

A butterfly factor of size s (s even) is the 2 x 2 block matrix [[D1, D2], [D3, D4]] with diagonal
D's of size s/2; the butterfly factor matrix B_s of size n is block-diagonal with n/s of them, i.e.
it mixes index t with t +- s/2 inside aligned groups of s.  A butterfly matrix of size n = 2^L is
B = B_n B_{n/2} ... B_2 (B_2 applied first).

Butterfly implies Monarch (n = m^2, m = 2^p): B_m ... B_2 only mixes inside aligned groups of m,
so it is block-diagonal with m blocks of m x m (= R); B_n ... B_2m only mixes indices that agree
modulo m, so it is P (block-diagonal) P^T (= P L P^T).  Hence B = P L P^T R is Monarch, and
:func:`butterfly_to_monarch` reads the two block-diagonal factors off exactly.
"""
from __future__ import annotations

import math

import torch

from compress.structured.monarch import MonarchShape


def _log2(n: int) -> int:
    L = int(round(math.log2(n))) if n > 0 else -1
    if n < 2 or 2**L != n:
        raise ValueError(f"butterfly size n = {n} must be a power of two >= 2")
    return L


def random_butterfly(n: int, generator: torch.Generator | None = None, dtype=torch.float64) -> list[torch.Tensor]:
    """Random twiddles of B_2, B_4, ..., B_n: factor of size s has shape (n/s, 2, 2, s/2)
    = (block, out half, in half, position) holding the diagonals of D1..D4."""
    L = _log2(n)
    return [torch.randn(n // 2**e, 2, 2, 2 ** (e - 1), generator=generator, dtype=dtype) / math.sqrt(2) for e in range(1, L + 1)]


def apply_factor(x: torch.Tensor, twiddle: torch.Tensor) -> torch.Tensor:
    """y = B_s x for rows of x (N, n), without materialising B_s."""
    nb, _, _, half = twiddle.shape
    xs = x.reshape(-1, nb, 2, half)  # (N, n/s, 2, s/2)
    return torch.einsum("bpqt,Nbqt->Nbpt", twiddle, xs).reshape(x.shape)  # (N, n)


def butterfly_apply(x: torch.Tensor, twiddles: list[torch.Tensor]) -> torch.Tensor:
    """y = B_n ... B_2 x for rows of x (N, n)."""
    for tw in twiddles:  # B_2 first
        x = apply_factor(x, tw)
    return x


def butterfly_dense(twiddles: list[torch.Tensor]) -> torch.Tensor:
    """Materialise B = B_n ... B_2 (n, n)."""
    nb, _, _, half = twiddles[0].shape
    n = nb * 2 * half
    eye = torch.eye(n, dtype=twiddles[0].dtype)
    return butterfly_apply(eye, twiddles).T  # rows of the result are (B e_c)^T, so transpose


def butterfly_to_monarch(twiddles: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, MonarchShape]:
    """Exact Monarch factors (w1, w2) of a butterfly matrix of size n = m^2 (Thm. 2).

    1. R = B_m ... B_2 is block-diagonal: w1[a] = its a-th diagonal m x m block;
    2. H = B_n ... B_2m = P L P^T: L's block b is H restricted to indices = b (mod m):
       w2[b, a', a] = H[a' m + b, a m + b].
    """
    L = len(twiddles)
    n = 2**L
    if L % 2:
        raise ValueError(f"butterfly_to_monarch needs n = m^2 with m a power of two; n = {n} is not a square")
    m = 2 ** (L // 2)
    R = butterfly_dense(twiddles[: L // 2])  # (n, n), block-diagonal
    H = butterfly_dense(twiddles[L // 2 :])  # (n, n)
    blocks = torch.arange(m)
    # 1. w1: (k, j, i) = (m, m, m)
    w1 = R.reshape(m, m, m, m)[blocks, :, blocks, :]  # (a, row, col) of the diagonal blocks
    # 2. w2: (j, l, k) = (m, m, m); H index (a, b) -> a * m + b
    H4 = H.reshape(m, m, m, m)  # (a', b', a, b)
    w2 = H4[:, blocks, :, blocks]  # (b, a', a): entries with b' = b
    return w1.contiguous(), w2.contiguous(), MonarchShape(n, n, m, m, 1)
