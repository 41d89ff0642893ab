"""Type stubs of optbowl._core, the compiled core (private: use the optbowl package)."""

from typing import List, Optional, Sequence, Tuple

import numpy as np

chunk_size: int
parallel_min: int

def set_num_threads(n: int) -> None: ...
def get_num_threads() -> int: ...
def has_openmp() -> bool: ...
def rprop(
    variant: str,
    params: List[np.ndarray],
    grads: List[np.ndarray],
    prevs: List[np.ndarray],
    steps: List[np.ndarray],
    updates: Optional[List[np.ndarray]],
    groups: Sequence[Tuple[float, float, float, float, bool]],
    group_sizes: Sequence[int],
    loss_increased: bool = True,
) -> None: ...
def adagrad(
    params: List[np.ndarray],
    grads: List[np.ndarray],
    sums: List[np.ndarray],
    steps: Sequence[float],
    groups: Sequence[Tuple[float, float, float, float, bool]],
    group_sizes: Sequence[int],
) -> None: ...
