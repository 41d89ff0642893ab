"""The NumPy references of Lion, Adadelta, Adamax, NAdam, RAdam and ASGD against torch, bit for bit.

The compiled rules (cpp/include/optbowl/rules/) take the same operations in the same order,
so these references pin down torch's rounding for them. Adamax and ASGD are compared with
torch.optim's single-tensor path (foreach=False) as it is; Adadelta, NAdam and RAdam take a
square root of a tensor, and torch's CPU Tensor.sqrt is not correctly rounded where torch is
built with MKL (its vector math library), so those run with torch's sqrt replaced by IEEE's:
every other operation must then agree bit for bit. Lion has no torch optimizer; it is compared
with the torch operations of its reference implementation.
"""

from fractions import Fraction

import numpy as np
import pytest

import reference as ref

torch = pytest.importorskip("torch")

DTYPES = [np.float32, np.float64]
TORCH_DTYPE = {np.float32: torch.float32, np.float64: torch.float64}
STEPS = 50


def _exact_fma(x, y, z, dtype):
    """x * y + z rounded once to dtype, from exact rational arithmetic."""
    exact = Fraction(float(x)) * Fraction(float(y)) + Fraction(float(z))
    d = float(exact)
    if dtype == np.float64 or Fraction(d) == exact:
        return dtype(d)
    if np.float64(d).view(np.int64) & 1 == 0:  # round to odd, then to float32
        d = float(np.nextafter(d, np.inf if exact > Fraction(d) else -np.inf))
    return dtype(d)


@pytest.mark.parametrize("dtype", DTYPES)
def test_fma_is_rounded_once(dtype):
    rng = np.random.default_rng(3)
    n = 4000
    a = (rng.standard_normal(n) * 10.0 ** rng.integers(-6, 6, n)).astype(dtype)
    b = (rng.standard_normal(n) * 10.0 ** rng.integers(-6, 6, n)).astype(dtype)
    c = (-(a.astype(np.float64) * b) * (1 + rng.standard_normal(n) * 1e-9)).astype(dtype)
    c[::3] = rng.standard_normal(n)[::3].astype(dtype)  # no cancellation
    got = ref._fma(a, b, c)
    want = np.array([_exact_fma(x, y, z, dtype) for x, y, z in zip(a, b, c)], dtype)
    assert got.dtype == dtype
    assert np.array_equal(got.view(np.uint8), want.view(np.uint8))


@pytest.mark.parametrize("dtype", DTYPES)
def test_fma_keeps_ieee_zeros_and_non_finite_values(dtype):
    a = np.array([0.0, -0.0, 1.0, 2.0, np.inf, np.nan, 1.0], dtype)
    b = np.array([1.0, 2.0, -0.0, 3.0, 1.0, 1.0, np.inf], dtype)
    c = np.array([-0.0, -0.0, -0.0, -6.0, 1.0, 1.0, -np.inf], dtype)
    with np.errstate(invalid="ignore"):
        got = ref._fma(a, b, c)
    assert np.array_equal(np.signbit(got[:4]), [False, True, True, False])
    assert np.all(got[:4] == 0)
    assert got[4] == np.inf and np.isnan(got[5]) and np.isnan(got[6])


def _gradient(rng, shape, dtype, t):
    g = rng.standard_normal(shape) * 10.0 ** rng.integers(-3, 3, shape)
    if t == 3:
        g.flat[:5] = 0.0
    return g.astype(dtype)


def _grid(**options):
    """The first value of every option, each other value alone, and the last of each at once."""
    base = {k: v[0] for k, v in options.items()}
    cases = [base] + [{**base, k: x} for k, v in options.items() for x in v[1:]]
    return cases + [{k: v[-1] for k, v in options.items()}]


def _same(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and np.array_equal(a.view(np.uint8), b.view(np.uint8))


def _run_beside_torch(dtype, make_torch, ref_step, ref_state, kw, state_names, check_scalars):
    rng = np.random.default_rng(7)
    p = rng.standard_normal((5, 13)).astype(dtype)
    tp = torch.tensor(p.copy())
    topt = make_torch([tp])
    state = ref_state(p)
    for t in range(1, STEPS + 1):
        g = _gradient(rng, p.shape, dtype, t)
        tp.grad = torch.from_numpy(g.copy())
        topt.step()
        ref_step(p, g, state, **kw)
        tstate = topt.state[tp]
        assert _same(p, tp.numpy()), f"param, step {t}"
        for name in state_names:
            assert _same(state[name], tstate[name].numpy()), f"{name}, step {t}"
        assert float(tstate["step"]) == t
        check_scalars(state, tstate)


def _no_scalars(state, tstate):
    pass


LION = _grid(lr=[1e-4, 3e-2], betas=[(0.9, 0.99), (0.5, 0.7)], weight_decay=[0.0, 0.1],
             maximize=[False, True])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kw", LION, ids=str)
def test_lion_reference_matches_torch_operations(dtype, kw):
    beta1, beta2 = kw["betas"]
    rng = np.random.default_rng(7)
    p = rng.standard_normal(67).astype(dtype)
    tp, tm = torch.tensor(p.copy()), torch.zeros(67, dtype=TORCH_DTYPE[dtype])
    state = {"exp_avg": np.zeros_like(p)}
    for t in range(1, STEPS + 1):
        g = _gradient(rng, p.shape, dtype, t)
        tg = torch.from_numpy(g.copy())
        tg = -tg if kw["maximize"] else tg
        tp.mul_(1 - kw["lr"] * kw["weight_decay"])
        tp.add_(tm.lerp(tg, 1 - beta1).sign_(), alpha=-kw["lr"])
        tm.lerp_(tg, 1 - beta2)
        ref.lion_step(p, g, state, **kw)
        assert _same(p, tp.numpy()), f"step {t}"
        assert _same(state["exp_avg"], tm.numpy()), f"step {t}"


def test_lion_sign_of_zero_is_zero_and_of_nan_is_nan():
    p = np.ones(3, np.float32)
    state = {"exp_avg": np.zeros(3, np.float32)}
    ref.lion_step(p, np.array([0.0, np.nan, -2.0], np.float32), state, lr=0.5)
    assert p[0] == 1.0 and np.isnan(p[1]) and p[2] == 1.5


ADAMAX = _grid(lr=[2e-3, 0.3], betas=[(0.9, 0.999), (0.3, 0.7)], eps=[1e-8, 0.1],
               weight_decay=[0.0, 0.013], maximize=[False, True])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kw", ADAMAX, ids=str)
def test_adamax_reference_matches_torch(dtype, kw):
    def ref_state(p):
        return {"step": 0, "exp_avg": np.zeros_like(p), "exp_inf": np.zeros_like(p)}

    _run_beside_torch(dtype, lambda ps: torch.optim.Adamax(ps, foreach=False, **kw),
                      ref.adamax_step, ref_state, kw, ["exp_avg", "exp_inf"], _no_scalars)


ASGD = _grid(lr=[1e-2, 0.3], lambd=[1e-4, 0.05], alpha=[0.75, 0.3], t0=[1e6, 10.0, 0.0],
             weight_decay=[0.0, 0.013], maximize=[False, True])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kw", ASGD, ids=str)
def test_asgd_reference_matches_torch(dtype, kw):
    def scalars(state, tstate):
        assert tstate["eta"].dtype == torch.float32 and tstate["mu"].dtype == torch.float32
        assert state["eta"] == tstate["eta"].item() and state["mu"] == tstate["mu"].item()

    _run_beside_torch(dtype, lambda ps: torch.optim.ASGD(ps, foreach=False, **kw), ref.asgd_step,
                      lambda p: ref.asgd_init(p, kw["lr"]), kw, ["ax"], scalars)


ADADELTA = _grid(lr=[1.0, 0.37], rho=[0.9, 0.5], eps=[1e-6, 1e-3], weight_decay=[0.0, 0.013],
                 maximize=[False, True])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kw", ADADELTA, ids=str)
def test_adadelta_reference_matches_torch_given_ieee_sqrt(ieee_sqrt, dtype, kw):
    def ref_state(p):
        return {"square_avg": np.zeros_like(p), "acc_delta": np.zeros_like(p)}

    _run_beside_torch(dtype, lambda ps: torch.optim.Adadelta(ps, foreach=False, **kw),
                      ref.adadelta_step, ref_state, kw, ["square_avg", "acc_delta"], _no_scalars)


NADAM = _grid(lr=[2e-3, 0.3], betas=[(0.9, 0.999), (0.3, 0.7)], eps=[1e-8],
              weight_decay=[0.0, 0.013], momentum_decay=[4e-3, 0.3],
              decoupled_weight_decay=[False, True], maximize=[False, True])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kw", NADAM, ids=str)
def test_nadam_reference_matches_torch_given_ieee_sqrt(ieee_sqrt, dtype, kw):
    def scalars(state, tstate):
        assert tstate["mu_product"].dtype == torch.float32
        assert state["mu_product"] == tstate["mu_product"].item()

    _run_beside_torch(dtype, lambda ps: torch.optim.NAdam(ps, foreach=False, **kw),
                      ref.nadam_step, ref.nadam_init, kw, ["exp_avg", "exp_avg_sq"], scalars)


RADAM = _grid(lr=[1e-3, 0.3], betas=[(0.9, 0.999), (0.3, 0.7), (0.9, 0.8)], eps=[1e-8, 0.1],
              weight_decay=[0.0, 0.013], decoupled_weight_decay=[False, True], maximize=[False])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kw", RADAM, ids=str)
def test_radam_reference_matches_torch_given_ieee_sqrt(ieee_sqrt, dtype, kw):
    # rectified (rho_t > 5) from step 6 with beta2 = 0.999, from step 10 with 0.7 and from
    # step 7 with 0.8: both branches within the 50 steps
    def ref_state(p):
        return {"step": 0, "exp_avg": np.zeros_like(p), "exp_avg_sq": np.zeros_like(p)}

    _run_beside_torch(dtype, lambda ps: torch.optim.RAdam(ps, foreach=False, **kw),
                      ref.radam_step, ref_state, kw, ["exp_avg", "exp_avg_sq"], _no_scalars)


def test_radam_reference_takes_both_branches():
    p = np.ones(2)
    state = {"step": 0, "exp_avg": np.zeros(2), "exp_avg_sq": np.zeros(2)}
    moves = []
    for _ in range(8):
        before = p.copy()
        ref.radam_step(p, np.array([1.0, -1.0]), state, lr=0.1, betas=(0.9, 0.99))
        moves.append(before[0] - p[0])
    # unrectified while rho_t <= 5 (steps 1-5 for beta2 = 0.99): the step is lr exactly
    assert moves[:5] == [pytest.approx(0.1, rel=1e-12)] * 5
    assert all(m != pytest.approx(0.1, rel=1e-6) for m in moves[5:])
