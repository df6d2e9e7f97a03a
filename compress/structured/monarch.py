"""Monarch matrices (Dao et al. 2022, "Monarch: Expressive Structured Matrices for Efficient and
Accurate Training", ICML): the layer, the optimal dense -> Monarch projection, model surgery.

Definition (paper eq. 1, square case n = m^2):  M = P L P^T R, where R and L are block-diagonal
with m blocks of m x m and P is the "transpose" permutation: view a length-n vector as an m x m
matrix (row-major), transpose it, flatten again.  P is an involution (P = P^T = P^-1).

General (rectangular, rank-r) form used here, the paper's Sec. 3 generalisation with rectangular
blocks (no padding; the block counts must divide the sizes):

    in_features  n_in  = k * i    (k input blocks of size i)
    out_features n_out = j * l    (j output blocks of size l)
    R = w1 : (k, j*r, i)   block-diagonal, block a maps x[a, :] (i) -> u[a, :, :] (j, r)
    P^T    : u (k, j, r) -> (j, k, r)                    a transpose, done by reshape/permute
    L = w2 : (j, l, k*r)   block-diagonal, block b maps u[b] (k*r) -> v[b, :] (l)
    P      : v (j, l) -> (l, j)                           output index o = l_idx * j + j_idx

so that, with o = (l, j) and input index (k, i),

    M[(l, j), (k, i)] = sum_r w2[j, l, (k, r)] * w1[k, (j, r), i].                    (*)

For k = j = l = i = m and r = 1 this is exactly P L P^T R with m blocks of m x m and
2 n sqrt(n) parameters.  Parameters in general: r * (j * n_in + k * n_out).

Projection (paper Thm. 1 / Alg. 1): by (*), the slice M[(:, j), (k, :)] (an l x i matrix) is
sum_r w2[j, :, (k, r)] w1[k, (j, r), :]^T: any matrix of rank <= r, and different (k, j) slices use
disjoint parameters.  So the Monarch matrices are exactly the matrices whose k*j slices all have
rank <= r, and the Frobenius-nearest one is the per-slice truncated SVD (Eckart-Young).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

from compress.structured.base import StructuredLinear


def transpose_permutation(x: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """The permutation P on the last dim: view it as (rows, cols) row-major, transpose, flatten.

    With rows == cols it is an involution: applying it twice is the identity (P = P^-1 = P^T).
    """
    return x.unflatten(-1, (rows, cols)).transpose(-1, -2).flatten(-2)  # (..., cols*rows)


@dataclass(frozen=True)
class MonarchShape:
    """Block structure of one Monarch layer (see the module docstring for the symbols)."""

    in_features: int
    out_features: int
    nblocks_in: int  # k
    nblocks_out: int  # j
    rank: int = 1  # r

    def __post_init__(self):
        for name in ("in_features", "out_features", "nblocks_in", "nblocks_out", "rank"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} = {getattr(self, name)} must be >= 1")
        if self.in_features % self.nblocks_in:
            raise ValueError(f"nblocks_in = {self.nblocks_in} does not divide in_features = {self.in_features}; "
                             f"allowed: {divisors(self.in_features)}")
        if self.out_features % self.nblocks_out:
            raise ValueError(f"nblocks_out = {self.nblocks_out} does not divide out_features = {self.out_features}; "
                             f"allowed: {divisors(self.out_features)}")

    @property
    def blk_in(self) -> int:  # i
        return self.in_features // self.nblocks_in

    @property
    def blk_out(self) -> int:  # l
        return self.out_features // self.nblocks_out

    @property
    def num_weights(self) -> int:
        """Entries of w1 and w2: r (j n_in + k n_out); 2 n sqrt(n) for the square paper case."""
        return self.rank * (self.nblocks_out * self.in_features + self.nblocks_in * self.out_features)

    @property
    def flops_per_row(self) -> int:
        """Multiply-adds x2 for one input row (bias excluded): 2 * num_weights."""
        return 2 * self.num_weights

    def as_dict(self) -> dict:
        return asdict(self)


def divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def nearest_divisor(n: int, target: float) -> int:
    """The divisor of n closest to ``target`` (ties: the larger one)."""
    return min(divisors(n), key=lambda d: (abs(d - target), -d))


def sqrt_shape(in_features: int, out_features: int, rank: int = 1) -> MonarchShape:
    """The paper's choice m = sqrt(n) for each side; for non-squares the divisor nearest sqrt(n)."""
    return MonarchShape(in_features, out_features, nearest_divisor(in_features, math.sqrt(in_features)),
                        nearest_divisor(out_features, math.sqrt(out_features)), rank)


def _contiguous(g: torch.Tensor) -> torch.Tensor:
    return g.contiguous()


class MonarchLinear(StructuredLinear):
    """y = M x + b with M = P L P^T R (module docstring): two batched matmuls, permutations by
    reshape/permute; M is never materialised.  Parameters ``w1`` (R) and ``w2`` (L)."""

    kind = "monarch"
    factor_names = ("w1", "w2")

    def __init__(self, shape: MonarchShape, bias: bool = True):
        super().__init__()
        self.shape = shape
        self.in_features, self.out_features = shape.in_features, shape.out_features
        k, j, r, i, l = shape.nblocks_in, shape.nblocks_out, shape.rank, shape.blk_in, shape.blk_out
        self.w1 = nn.Parameter(torch.empty(k, j * r, i))  # R: k blocks (j*r) x i
        self.w2 = nn.Parameter(torch.empty(j, l, k * r))  # L: j blocks l x (k*r)
        self.bias = nn.Parameter(torch.zeros(shape.out_features)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # nn.Linear's default init applied per block: fan-in i for R, k*r for L.
        nn.init.kaiming_uniform_(self.w1.view(-1, self.shape.blk_in), a=math.sqrt(5))
        nn.init.kaiming_uniform_(self.w2.view(-1, self.w2.shape[-1]), a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(self.in_features)
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.shape
        k, j, r, l = s.nblocks_in, s.nblocks_out, s.rank, s.blk_out
        lead = x.shape[:-1]
        x = x.reshape(-1, s.in_features)  # (N, k*i)
        n = x.shape[0]
        # Layouts are chosen so that both bmm operands are strided views BLAS accepts (a leading
        # dimension, no copy); the only copy is the final permutation (and the middle one if r > 1).
        # 1. R: block a multiplies x[:, a, :]          (k, j*r, i) @ (k, i, N) -> (k, j*r, N)
        t = torch.bmm(self.w1, x.reshape(n, k, s.blk_in).permute(1, 2, 0))  # (k, j*r, N)
        # 2. P^T: block b of L sees (a, r) for every input block a      -> (j, N, k*r), a view if r == 1
        u = t.view(k, j, r, n).permute(1, 3, 0, 2).reshape(j, n, k * r)  # (j, N, k*r)
        # 3. L: block b                                 (j, N, k*r) @ (j, k*r, l) -> (j, N, l)
        v = torch.bmm(u, self.w2.transpose(1, 2))  # (j, N, l)
        # 4. P: output index o = l_idx * j + b
        y = v.permute(1, 2, 0).reshape(n, l * j)  # (N, n_out)
        if v.requires_grad:  # the gradients reaching t and v are permuted views; BLAS wants them contiguous
            t.register_hook(_contiguous)
            v.register_hook(_contiguous)
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*lead, s.out_features)

    def extra_repr(self) -> str:
        s = self.shape
        return (f"in_features={s.in_features}, out_features={s.out_features}, nblocks_in={s.nblocks_in}, "
                f"nblocks_out={s.nblocks_out}, rank={s.rank}, bias={self.bias is not None}")

    @classmethod
    def plan(cls, linear: nn.Linear, *, nblocks: int | str, rank: int, name: str,
             keys: tuple[str, str, str] = ("monarch.layers", "monarch.nblocks", "monarch.rank")) -> MonarchShape:
        """The shape for ``linear``: ``nblocks`` per side ('sqrt': the divisor nearest sqrt(n) on each side)."""
        _, nk, rk = keys
        m = linear
        if nblocks == "sqrt":
            shape = sqrt_shape(m.in_features, m.out_features, rank)
        else:
            nb = int(nblocks)
            if nb < 1 or m.in_features % nb or m.out_features % nb:
                common = [d for d in divisors(m.in_features) if m.out_features % d == 0]
                raise ValueError(f"{nk} = {nblocks!r} does not fit layer {name} ({m.in_features} -> {m.out_features}): "
                                 f"it must divide both sizes; allowed: {common} or 'sqrt'")
            shape = MonarchShape(m.in_features, m.out_features, nb, nb, rank)
        if shape.num_weights >= m.in_features * m.out_features:
            raise ValueError(f"{rk} = {rank} with {nk} = {nblocks!r} gives layer {name} ({m.in_features} -> {m.out_features}) "
                             f"{shape.num_weights} Monarch weights, not fewer than its {m.in_features * m.out_features} dense ones; "
                             "lower the rank or change the block count")
        return shape

    @classmethod
    def shape_from_dict(cls, d: dict) -> MonarchShape:
        return MonarchShape(**d)

    @classmethod
    def empty(cls, shape: MonarchShape, bias: bool = True) -> MonarchLinear:
        return cls(shape, bias=bias)

    @classmethod
    def from_dense(cls, linear: nn.Linear, shape: MonarchShape) -> MonarchLinear:
        return cls.from_linear(linear, shape)

    def to_dense(self) -> torch.Tensor:
        """M (n_out, n_in) from the factors, by (*) of the module docstring."""
        return monarch_to_dense(self.w1, self.w2, self.shape)

    @classmethod
    def from_linear(cls, linear: nn.Linear, shape: MonarchShape) -> MonarchLinear:
        """The Frobenius-nearest Monarch layer to ``linear`` (bias copied)."""
        if (linear.in_features, linear.out_features) != (shape.in_features, shape.out_features):
            raise ValueError(f"shape {shape} does not match {linear}")
        layer = cls(shape, bias=linear.bias is not None)
        w1, w2 = project(linear.weight.detach(), shape)
        with torch.no_grad():
            layer.w1.copy_(w1)
            layer.w2.copy_(w2)
            if linear.bias is not None:
                layer.bias.copy_(linear.bias.detach())
        return layer.to(linear.weight.device)


def _slices(weight: torch.Tensor, shape: MonarchShape) -> torch.Tensor:
    """Dense (n_out, n_in) -> the k*j slices of (*): (k, j, l, i)."""
    s = shape
    return weight.reshape(s.blk_out, s.nblocks_out, s.nblocks_in, s.blk_in).permute(2, 1, 0, 3)


def monarch_to_dense(w1: torch.Tensor, w2: torch.Tensor, shape: MonarchShape) -> torch.Tensor:
    """Materialise M (n_out, n_in) from its factors by (*); for projection checks, not for inference."""
    s = shape
    W1 = w1.reshape(s.nblocks_in, s.nblocks_out, s.rank, s.blk_in)  # (k, j, r, i)
    W2 = w2.reshape(s.nblocks_out, s.blk_out, s.nblocks_in, s.rank)  # (j, l, k, r)
    return torch.einsum("kjri,jlkr->ljki", W1, W2).reshape(s.out_features, s.in_features)


@torch.no_grad()
def project(weight: torch.Tensor, shape: MonarchShape) -> tuple[torch.Tensor, torch.Tensor]:
    """Optimal Frobenius projection of a dense (n_out, n_in) matrix onto Monarch (paper Alg. 1).

    1. cut W into its k*j slices (l x i), see (*);
    2. truncated SVD of every slice: U_r S_r V_r^T (batched, float64);
    3. w2[j, :, (k, r)] = U_r sqrt(S_r),  w1[k, (j, r), :] = sqrt(S_r) V_r^T.
    Returns (w1 (k, j*r, i), w2 (j, l, k*r)) in the dtype of ``weight``.
    """
    s = shape
    if tuple(weight.shape) != (s.out_features, s.in_features):
        raise ValueError(f"weight of shape {tuple(weight.shape)} does not match {s}")
    r = s.rank
    # 1. slices
    A = _slices(weight.double(), s)  # (k, j, l, i)
    # 2. batched SVD; r > min(l, i) keeps every singular value (padded with zeros below)
    U, S, Vh = torch.linalg.svd(A, full_matrices=False)  # (k,j,l,q) (k,j,q) (k,j,q,i), q = min(l,i)
    q = S.shape[-1]
    U, S, Vh = U[..., :r], S[..., :r], Vh[..., :r, :]
    if q < r:  # rank above the slice size: zero-pad the extra components
        U = torch.cat([U, U.new_zeros(*U.shape[:-1], r - q)], -1)
        S = torch.cat([S, S.new_zeros(*S.shape[:-1], r - q)], -1)
        Vh = torch.cat([Vh, Vh.new_zeros(*Vh.shape[:-2], r - q, Vh.shape[-1])], -2)
    root = S.sqrt()  # (k, j, r)
    # 3. factors
    w2 = (U * root.unsqueeze(-2)).permute(1, 2, 0, 3).reshape(s.nblocks_out, s.blk_out, s.nblocks_in * r)  # (j, l, k*r)
    w1 = (Vh * root.unsqueeze(-1)).reshape(s.nblocks_in, s.nblocks_out * r, s.blk_in)  # (k, j*r, i)
    return w1.to(weight.dtype), w2.to(weight.dtype)


def projection_error(weight: torch.Tensor, shape: MonarchShape) -> float:
    """Relative Frobenius error ||W - proj(W)|| / ||W||."""
    weight = weight.detach()
    w1, w2 = project(weight, shape)
    d = weight.double()
    return float((monarch_to_dense(w1.double(), w2.double(), shape) - d).norm() / d.norm().clamp_min(1e-300))


# --------------------------------------------------------------------------- model surgery (Monarch names of the generic ones)
STRUCTURE = MonarchLinear  # compress.structured.base.STRUCTURE_MODULES["monarch"]


def plan(model: nn.Module, layers: list[str] | str, nblocks: int | str = "sqrt", rank: int = 1,
         keys: tuple[str, str, str] = ("monarch.layers", "monarch.nblocks", "monarch.rank")) -> dict[str, MonarchShape]:
    """{layer name: MonarchShape}; every misfit is a one-line ValueError naming the params key."""
    from compress.structured import base

    return base.plan(model, "monarch", layers, nblocks, rank, keys)


def monarchize(model: nn.Module, shapes: dict[str, MonarchShape], project_weights: bool = True) -> nn.Module:
    """A deep copy of ``model`` with each named Linear replaced by a MonarchLinear: its optimal
    projection (``project_weights``) or an uninitialised layer of that shape (to load a state into)."""
    from compress.structured import base

    return base.structurize(model, "monarch", shapes, project_weights)


def monarch_layers(model: nn.Module) -> dict[str, MonarchLinear]:
    return {n: m for n, m in model.named_modules() if isinstance(m, MonarchLinear)}
