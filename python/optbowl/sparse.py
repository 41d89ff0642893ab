"""Row-sparse gradients: a gradient that touches only some rows of a 2-D parameter."""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _check, _device


class SparseRows:
    r"""The gradient of a 2-D parameter that is zero outside the rows ``indices``.

    Row ``indices[k]`` of the gradient is ``values[k]``; an index may repeat, and then its
    rows add up (as ``torch.sparse_coo_tensor(...).coalesce()`` sums duplicates). Given to
    :class:`optbowl.Adagrad` in place of a dense gradient, only those rows of the parameter
    and of its sum of squares change, with torch's sparse AdaGrad semantics:

    .. math::

        s_r \leftarrow s_r + g_r^2, \qquad
        p_r \leftarrow p_r - \eta_t \frac{g_r}{\sqrt{s_r} + \epsilon}
        \quad\text{for every touched row } r

    (``weight_decay`` must be 0 with sparse gradients, as in torch).

    Parameters
    ----------
    indices : array_like of int, shape (nnz,)
        Row indices, each in ``[0, rows)`` of the parameter it is the gradient of.
    values : ndarray, shape (nnz, cols)
        float32 or float64, the dtype of the parameter, C-contiguous. The parameter (and
        its sum of squares) must be C-ordered too, each row a run of memory; a dense
        gradient steps a parameter of any dense layout.

    Examples
    --------
    >>> import numpy as np, optbowl as ob
    >>> table = np.ones((4, 2))
    >>> opt = ob.Adagrad(table, lr=0.5)
    >>> opt.step([ob.SparseRows([2, 0, 2], np.ones((3, 2)))])   # a list: one gradient per parameter
    >>> table
    array([[0.5, 0.5],
           [1. , 1. ],
           [0.5, 0.5],
           [1. , 1. ]])
    """

    __slots__ = ("indices", "values")

    def __init__(self, indices: Any, values: Any) -> None:
        for name, a in (("indices", indices), ("values", values)):
            if _device.is_device_array(a):
                raise TypeError(f"{name}: a CUDA device array, but {_device.SPARSE_HOST_ONLY}")
        _check.not_masked("indices", indices)  # np.asarray would drop the mask
        idx = np.asarray(indices)
        if idx.size == 0 and idx.dtype == np.float64 and not isinstance(indices, np.ndarray):
            idx = idx.astype(np.int64)  # [] means no rows
        if idx.dtype == np.bool_ or not np.issubdtype(idx.dtype, np.integer):
            raise TypeError(f"indices: expected integers, got dtype {idx.dtype}")
        if idx.ndim != 1:
            raise ValueError(f"indices: must be 1-D, got shape {idx.shape}")
        if idx.size and (
            idx.min() < 0 or (idx.dtype.kind == "u" and idx.max() > np.iinfo(np.int64).max)
        ):
            raise ValueError(f"indices: row indices must be >= 0, got {idx.min()}")
        _check.float_array("values", values, writable=False)
        if values.dtype in _check.COMPLEX_DTYPES:
            raise TypeError(f"values: row-sparse gradients are real, got dtype {values.dtype}")
        if not values.flags.c_contiguous:  # its rows are read as runs of memory
            raise ValueError(f"values: must be C-contiguous, got strides "
                             f"{_check.element_strides(values)} (in elements)")
        if values.ndim != 2 or values.shape[0] != idx.shape[0]:
            raise ValueError(
                f"values: expected shape ({idx.shape[0]}, cols) (one row per index), "
                f"got {values.shape}"
            )
        self.indices = np.ascontiguousarray(idx, dtype=np.int64)
        self.values = values

    def to_dense(self, rows: int) -> np.ndarray:
        """The dense gradient, shape ``(rows, cols)`` (duplicates summed)."""
        rows = _check.integer("rows", rows, low=0)
        if self.indices.size and self.indices.max() >= rows:
            raise ValueError(f"rows: {rows} is too few for row index {self.indices.max()}")
        out = np.zeros((rows, self.values.shape[1]), self.values.dtype)
        np.add.at(out, self.indices, self.values)
        return out

    def __repr__(self) -> str:
        return (
            f"SparseRows({self.indices.size} rows of {self.values.shape[1]}, {self.values.dtype})"
        )
