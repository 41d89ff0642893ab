"""bfloat16 and float16 arrays in the NumPy API: stored in 16 bits, computed in float32.

Each stored value is the float32 computation rounded to the array's dtype (to nearest,
ties to even); the rules that follow torch's single-tensor loops (Rprop, RMSprop, SGD) round
some intermediate results too (tests/test_half_torch.py checks those against torch).
Here: QuickProp and Adam against a float32 NumPy reference rounded the same way, every ISA
alike, state_dict round trips, the functional API, and refusals that change nothing.
"""

import numpy as np
import pytest

import optbowl as ob
from optbowl import _core
from optbowl import functional as F

import reference as R

ml_dtypes = pytest.importorskip("ml_dtypes")
BF16 = np.dtype(ml_dtypes.bfloat16)
F16 = np.dtype(np.float16)
HALF = [BF16, F16]
SIZES = [32, 96, 2048, 64 * 1024 + 32]  # the last one runs on several threads


def rounded(x, dtype):
    """float32 values rounded to dtype and widened back (the kernels' store and load)."""
    return np.asarray(x, np.float32).astype(dtype).astype(np.float32)


def data(n, dtype, seed=0, zeros=0.1):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal(n).astype(np.float32)
    a[rng.random(n) < zeros] = 0.0
    return a.astype(dtype)


def same_bits(a, b):
    return np.array_equal(np.asarray(a).view(np.uint16), np.asarray(b).view(np.uint16))


@pytest.mark.parametrize("dtype", HALF, ids=str)
@pytest.mark.parametrize("n", SIZES)
def test_quickprop_against_reference(dtype, n):
    p = data(n, dtype)
    opt = ob.QuickProp(p, lr=0.05, max_growth=1.75)
    ref_p = p.astype(np.float32)
    ref_state = {"prev_grad": np.zeros(n, np.float32), "prev_step": np.zeros(n, np.float32)}
    for t in range(6):
        g = data(n, dtype, seed=t + 1)
        opt.step(g)
        R.quickprop_step(ref_p, g.astype(np.float32), ref_state, lr=0.05, max_growth=1.75)
        ref_p[...] = rounded(ref_p, dtype)
        for k in ref_state:
            ref_state[k][...] = rounded(ref_state[k], dtype)
        assert p.dtype == dtype
        assert same_bits(p, ref_p.astype(dtype)), f"step {t}"
        for k, v in ref_state.items():
            assert opt.state[0][k].dtype == dtype
            assert same_bits(opt.state[0][k], v.astype(dtype)), f"step {t}, {k}"


@pytest.mark.parametrize("dtype", HALF, ids=str)
@pytest.mark.parametrize("decoupled", [False, True])
def test_adam_against_reference(dtype, decoupled):
    """Adam's float32 rule with each stored value rounded (the reference's float32 Adam is
    bit-identical to the kernel's float32 Adam on finite values)."""
    n = 2048
    p = data(n, dtype)
    cls = ob.AdamW if decoupled else ob.Adam
    opt = cls(p, lr=1e-2, weight_decay=0.1)
    f32 = p.astype(np.float32)
    ours32 = cls(f32, lr=1e-2, weight_decay=0.1)
    for t in range(5):
        g = data(n, dtype, seed=t + 1)
        opt.step(g)
        ours32.step(g.astype(np.float32))  # float32 kernel from the rounded values ...
        f32[...] = rounded(f32, dtype)  # ... then rounded as the 16-bit kernel stores
        for k in ("exp_avg", "exp_avg_sq"):
            ours32.state[0][k][...] = rounded(ours32.state[0][k], dtype)
        assert same_bits(p, f32.astype(dtype)), f"step {t}"


@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_every_isa_rounds_alike(dtype):
    detected = _core.cpu_isa()
    isas = [i for i in ("baseline", "avx2", "avx512")
            if i == "baseline" or (i == "avx2" and detected in ("avx2", "avx512")) or i == detected]
    results = []
    try:
        for isa in isas:
            _core.set_cpu_isa(isa)
            out = []
            for cls, kw in [(ob.Adam, {}), (ob.Adagrad, {"weight_decay": 0.1}),
                            (ob.SGD, {"lr": 0.1, "momentum": 0.9, "nesterov": True}),
                            (ob.RMSprop, {"centered": True, "momentum": 0.5}), (ob.Rprop, {}),
                            (ob.QuickProp, {})]:
                p = data(4096 + 32, dtype)
                opt = cls(p, **kw)
                for t in range(3):
                    opt.step(data(p.size, dtype, seed=t + 5))
                out.append(p.view(np.uint16).copy())
            results.append(out)
    finally:
        _core.set_cpu_isa(detected)
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert np.array_equal(a, b)


@pytest.mark.parametrize("dtype", HALF, ids=str)
@pytest.mark.parametrize("variant", ["irprop-", "rprop-", "rprop+", "irprop+", "backtrack"])
def test_rprop_variants_keep_state_in_the_dtype(dtype, variant):
    p = data(256, dtype)
    opt = ob.Rprop(p, lr=0.01, variant=variant)
    before = p.astype(np.float32)
    for t in range(4):
        opt.step(data(256, dtype, seed=t + 1), loss=float(t))
    assert all(v.dtype == dtype for v in opt.state[0].values() if isinstance(v, np.ndarray))
    moved = np.abs(p.astype(np.float32) - before)
    assert np.all(np.isfinite(moved)) and moved.max() > 0
    # each move is a sum of at most 4 step sizes of at most 0.01 * 1.2**4 (rounded up)
    assert moved.max() <= 4 * 0.01 * 1.2**4 * 1.01 + 0.01 * 4


@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_state_dict_round_trip(dtype, tmp_path):
    p = data(512, dtype)
    opt = ob.Adam(p, lr=1e-2, amsgrad=True)
    for t in range(3):
        opt.step(data(512, dtype, seed=t + 1))
    sd = opt.state_dict()
    assert sd["state"][0]["exp_avg"].dtype == dtype
    q = p.copy()
    other = ob.Adam(q, lr=1e-2, amsgrad=True)
    other.load_state_dict(sd)
    for t in range(3):
        g = data(512, dtype, seed=t + 10)
        opt.step(g)
        other.step(g.copy())
    assert same_bits(p, q)
    for k in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"):
        assert same_bits(opt.state[0][k], other.state[0][k])


@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_state_of_another_dtype_is_refused(dtype):
    p = data(64, dtype)
    opt = ob.Adam(p, lr=1e-2)
    opt.step(data(64, dtype, seed=1))
    sd = opt.state_dict()
    sd["state"][0]["exp_avg"] = sd["state"][0]["exp_avg"].astype(np.float32)
    with pytest.raises((TypeError, ValueError), match="exp_avg"):
        ob.Adam(p.copy(), lr=1e-2).load_state_dict(sd)


@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_grad_of_another_dtype_is_refused_and_nothing_changes(dtype):
    params = [data(64, dtype), data(32, dtype, seed=2)]
    opt = ob.Adam(params, lr=1e-2)
    opt.step([data(64, dtype, seed=3), data(32, dtype, seed=4)])
    before = [a.copy() for a in params]
    state = [{k: v.copy() for k, v in opt.state[i].items() if isinstance(v, np.ndarray)}
             for i in range(2)]
    with pytest.raises(TypeError, match=r"grads\[1\]"):
        opt.step([data(64, dtype, seed=5), data(32, np.float32, seed=6)])
    for i, (a, b) in enumerate(zip(params, before)):
        assert same_bits(a, b)
        for k, v in state[i].items():
            assert same_bits(opt.state[i][k], v)
    assert opt.state[0]["step"] == 1


def test_mixed_dtypes_across_parameters():
    """One call steps float32, float64, float16 and bfloat16 parameters side by side, each
    as it would alone."""
    dtypes = [np.dtype(np.float32), np.dtype(np.float64), F16, BF16]
    params = [data(96, d, seed=i) for i, d in enumerate(dtypes)]
    alone = [a.copy() for a in params]
    opt = ob.Adagrad(params, lr=0.1)
    opts = [ob.Adagrad(a, lr=0.1) for a in alone]
    for t in range(3):
        grads = [data(96, d, seed=10 + t) for d in dtypes]
        opt.step(grads)
        for o, g in zip(opts, grads):
            o.step(g.copy())
    for a, b in zip(params, alone):
        assert a.dtype == b.dtype and np.array_equal(a.view(np.uint8), b.view(np.uint8))


@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_functional_api(dtype):
    p = data(128, dtype)
    q = p.copy()
    s_f = np.zeros(128, dtype)
    opt = ob.Adagrad(q, lr=0.1)
    for t in range(1, 4):
        g = data(128, dtype, seed=t)
        F.adagrad([p], [g], [s_f], step=t, lr=0.1)
        opt.step(g.copy())
    assert same_bits(p, q)
    assert same_bits(s_f, opt.state[0]["sum"])


@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_sparse_rows_refuse_half(dtype):
    p = data(32, dtype).reshape(8, 4)
    before = p.copy()
    opt = ob.Adagrad(p, lr=0.1)
    rows = ob.SparseRows(np.array([1, 3]), np.ones((2, 4), dtype))
    with pytest.raises(TypeError, match="float32 or float64"):
        opt.step([rows])
    assert same_bits(p, before)


def test_rounding_is_to_nearest_even():
    """The stored value is the float32 result rounded to nearest, ties to even: a step
    that lands half-way between two bfloat16 values goes to the even one."""
    one = np.ones(32, BF16)
    # 1 + 2**-8 is half-way between 1 and 1 + 2**-7 in bfloat16: ties to 1 (even)
    # 1 + 3 * 2**-8 is half-way between 1 + 2**-7 and 1 + 2**-6: ties to 1 + 2**-6
    cases = [(2.0**-8, 1.0), (3 * 2.0**-8, 1 + 2.0**-6), (2.0**-8 + 2.0**-14, 1 + 2.0**-7)]
    for delta, want in cases:
        p = one.copy()
        ob.SGD(p, lr=1.0).step(np.full(32, -delta, BF16))
        assert np.all(p.astype(np.float64) == want), delta
    h = np.ones(32, F16)
    ob.SGD(h, lr=1.0).step(np.full(32, -(2.0**-11), F16))  # half-way: ties to 1
    assert np.all(h == 1.0)
    h = np.full(32, 65504.0, F16)
    ob.SGD(h, lr=1.0).step(np.full(32, -16.0, F16))  # 65520 and beyond round to inf
    assert np.all(np.isinf(h))


def special_data(n, dtype, seed):
    """Normal values with NaNs of both signs, infinities, zeros of both signs, denormals
    and halfway cases of the 16-bit rounding sprinkled in."""
    a = data(n, dtype, seed=seed).astype(np.float32)
    specials = np.array([np.nan, -np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-39, -3e-41,
                         1e-7, 6e-8, 1.0 + 2.0 ** -8, 1.0 + 3 * 2.0 ** -8, 65520.0, 1e38],
                        np.float32)
    rng = np.random.default_rng(seed + 100)
    where = rng.choice(n, size=n // 16, replace=False)
    a[where] = specials[rng.integers(0, specials.size, where.size)]
    with np.errstate(over="ignore"):  # 1e38 overflows float16 to inf, as meant
        return a.astype(dtype)


EVERY_RULE = [(ob.Adam, {}), (ob.AdamW, {"weight_decay": 0.1}), (ob.Adam, {"amsgrad": True}),
              (ob.Adagrad, {"weight_decay": 0.1}), (ob.SGD, {"lr": 0.1}),
              (ob.SGD, {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01}),
              (ob.RMSprop, {"centered": True, "momentum": 0.5}), (ob.Rprop, {}),
              (ob.Rprop, {"variant": "rprop+"}), (ob.QuickProp, {}), (ob.Lion, {}),
              (ob.ASGD, {}), (ob.Adadelta, {}), (ob.Adamax, {}), (ob.NAdam, {}), (ob.RAdam, {})]


@pytest.mark.parametrize("dtype", HALF, ids=str)
@pytest.mark.parametrize("cls,kw", EVERY_RULE, ids=lambda v: getattr(v, "__name__", str(v)))
def test_every_rule_every_isa_alike_with_special_values(restore_isa, dtype, cls, kw):
    # 16-bit steps run AVX-512 on every rule where the CPU has it, AVX2's or the baseline's
    # runner where set_cpu_isa lowers it: NaNs, infinities, denormals and halfway cases
    # round alike in each. Sizes with and without a 16-bit tail; a step mixing a float32
    # tensor in runs the rule's own runner.
    detected = _core.cpu_isa()
    isas = [i for i in ("baseline", "avx2", "avx512")
            if i == "baseline" or (i == "avx2" and detected in ("avx2", "avx512")) or i == detected]
    results = []
    for isa in isas:
        _core.set_cpu_isa(isa)
        out = []
        for mixed in (False, True):
            params = [special_data(4096 + 37, dtype, seed=1), special_data(64, dtype, seed=2)]
            if mixed:
                params.append(data(100, np.float32, seed=3))
            opt = cls(params, **kw)
            for t in range(3):
                grads = [special_data(p.size, p.dtype, seed=t + 5) if p.dtype != np.float32
                         else data(p.size, np.float32, seed=t + 5) for p in params]
                opt.step(grads)
            out += [p.view(np.uint16 if p.dtype.itemsize == 2 else np.uint32).copy()
                    for p in params]
        results.append(out)
    assert len(results) >= 2
    # The vector runners agree bit for bit. The baseline's float16 conversion (without
    # F16C) can give a NaN the other sign: there only the sign of a NaN may differ.
    for other in results[2:]:
        for a, b in zip(results[1], other):
            assert np.array_equal(a, b)
    for other in results[1:]:
        for a, b in zip(results[0], other):
            if a.dtype == np.uint16 and dtype == F16:
                nan_a = (a & 0x7fff) > 0x7c00
                assert np.array_equal(nan_a, (b & 0x7fff) > 0x7c00)
                a, b = np.where(nan_a, a & 0x7fff, a), np.where(nan_a, b & 0x7fff, b)
            assert np.array_equal(a, b)
