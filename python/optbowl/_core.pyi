"""Type stubs of optbowl._core, the compiled core (private: use the optbowl package)."""

from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

chunk_size: int
chunk_size_max: int
parallel_min: int

def set_num_threads(n: int) -> None: ...
def get_num_threads() -> int: ...
def max_num_threads() -> int: ...
def helper_threads() -> int: ...
def steps_in_flight() -> int: ...
def has_openmp() -> bool: ...
# The step function of each compiled rule, optbowl._core.<rule>(...) -> None: its arguments
# are the names in rules[<rule>] (the operand lists, then steps where the rule counts them,
# groups (one tuple of rules[<rule>]["groups"] per group, then, for a rule with scalar
# state, the values of rules[<rule>]["scalar_state"] and whether they are float64) and
# group_sizes), as the registry of compiled rules (cpp/include/optbowl/registry.hpp) binds them.
rules: Dict[str, Dict[str, Any]]

def scalar_state_after(name: str, group: tuple, t: float) -> Tuple[float, ...]: ...

def __getattr__(name: str) -> Callable[..., None]: ...
def sparse_adagrad(
    params: List[np.ndarray],
    grads: List[np.ndarray],
    sums: List[np.ndarray],
    indices: List[Optional[np.ndarray]],
    steps: Sequence[float],
    groups: Sequence[Tuple[float, float, float, float, bool]],
    group_sizes: Sequence[int],
) -> None: ...
def stream_floor(
    inout: List[List[np.ndarray]],
    read: List[List[np.ndarray]],
    scale: float = 1.0,
    shift: float = 0.0,
) -> None: ...
def cpu_isa() -> str: ...
def detected_isa() -> str: ...
def set_cpu_isa(isa: str) -> None: ...
def wide_in_cache_bytes() -> int: ...
def set_wide_in_cache_bytes(bytes: int) -> None: ...
def prefetch_min_bytes() -> int: ...
def set_prefetch_min_bytes(bytes: int) -> None: ...
def short_step(optimizer: Any, layout: Tuple[Any, ...], grads: Any) -> bool: ...
def add_one(counters: List[np.ndarray]) -> None: ...
def check_calls(
    calls: Sequence[
        Tuple[Optional[Sequence[int]], Sequence[Tuple[str, Optional[List[np.ndarray]], bool]]]
    ],
) -> None: ...
def bowl_methods() -> List[str]: ...
def bowl_run(
    method: str,
    A: np.ndarray,
    b: np.ndarray,
    c: float,
    x0: np.ndarray,
    steps: int,
    names: List[str],
    hyper: np.ndarray,
    dtype: str,
    noise: Optional[np.ndarray] = None,
    sigma: float = 0.0,
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]: ...
def bowl_sweep(
    method: str,
    A: np.ndarray,
    b: np.ndarray,
    x0: np.ndarray,
    xstar: np.ndarray,
    steps: int,
    names: List[str],
    table: np.ndarray,
    dtype: str,
) -> Tuple[float, np.ndarray, np.ndarray, np.ndarray]: ...

# low-precision state (state_bits=8|16; register_quantized.cpp)
quantization_block: int
def quantized_adagrad(
    state_bits: int,
    stochastic_rounding: bool,
    seed: int,
    params: List[np.ndarray],
    grads: List[np.ndarray],
    sums: List[np.ndarray],
    sum_absmaxes: Optional[List[np.ndarray]],
    steps: Sequence[float],
    groups: Sequence[Tuple[float, float, float, float, bool]],
    group_sizes: Sequence[int],
) -> None: ...
def quantized_adam(
    state_bits: int,
    stochastic_rounding: bool,
    seed: int,
    params: List[np.ndarray],
    grads: List[np.ndarray],
    exp_avgs: List[np.ndarray],
    exp_avg_sqs: List[np.ndarray],
    max_exp_avg_sqs: Optional[List[np.ndarray]],
    exp_avg_absmaxes: Optional[List[np.ndarray]],
    exp_avg_sq_absmaxes: Optional[List[np.ndarray]],
    max_exp_avg_sq_absmaxes: Optional[List[np.ndarray]],
    steps: Sequence[float],
    groups: Sequence[Tuple[float, float, float, float, float, bool, bool, bool]],
    group_sizes: Sequence[int],
) -> None: ...
def quantize(
    values: np.ndarray, state_bits: int, signed: bool
) -> Tuple[np.ndarray, Optional[np.ndarray]]: ...
def dequantize(
    codes: np.ndarray, absmax: Optional[np.ndarray], state_bits: int, signed: bool
) -> np.ndarray: ...
def bowl_run_quantized(
    method: str,
    A: np.ndarray,
    b: np.ndarray,
    c: float,
    x0: np.ndarray,
    steps: int,
    names: List[str],
    hyper: np.ndarray,
    state_bits: int,
    stochastic_rounding: bool = False,
    seed: int = 0,
    noise: Optional[np.ndarray] = None,
    sigma: float = 0.0,
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]: ...
