"""bowl.run and optbowl.sweep: the compiled loops on a bowl, checked against the optimizer
classes stepping the same gradients, and against the theory."""

import numpy as np
import pytest

import optbowl as ob
from optbowl.bowl import LINEAR_METHODS

RPROP_VARIANTS = ("irprop-", "rprop-", "rprop+", "irprop+", "backtrack")


def c_order_gradient_and_loss(bowl, x):
    """g = Ax − b and f as the simulator computes them: double accumulation, row by row."""
    n = bowl.n
    xd = [float(v) for v in x]
    g = np.empty(n)
    quad = lin = 0.0
    for i in range(n):
        acc = 0.0
        for j in range(n):
            acc += float(bowl.A[i, j]) * xd[j]
        quad += xd[i] * acc
        lin += float(bowl.b[i]) * xd[i]
        g[i] = acc - float(bowl.b[i])
    return g, 0.5 * quad - lin + bowl.c


def drive(bowl, optimizer, x0, steps, dtype, wants_loss=False, **hyper):
    x = np.array(x0, dtype=dtype)
    opt = optimizer(x, **hyper)
    out = [x.copy()]
    for _ in range(steps):
        g, loss = c_order_gradient_and_loss(bowl, x)
        opt.step(g.astype(dtype), loss=loss) if wants_loss else opt.step(g.astype(dtype))
        out.append(x.copy())
    return np.array(out)


@pytest.fixture
def bowl():
    return ob.QuadraticBowl.from_eigenvalues([0.5, 3.0, 40.0], rotate=True, seed=9,
                                             minimizer=[1.0, -0.5, 2.0])


X0 = np.array([2.0, 1.0, -3.0])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("variant", RPROP_VARIANTS)
def test_rprop_run_is_the_optimizer_bit_for_bit(bowl, variant, dtype):
    hp = {"lr": 0.05, "etas": (0.4, 1.3), "step_sizes": (1e-5, 2.0), "variant": variant}
    t = bowl.run("rprop", X0, 60, dtype=dtype, **hp)
    ref = drive(bowl, ob.Rprop, X0, 60, dtype, wants_loss=variant == "irprop+", **hp)
    assert t.x.dtype == dtype
    np.testing.assert_array_equal(t.x, ref)
    assert t.hyper["variant"] == variant and t.source == "run"
    assert t.f[-1] < t.f[0]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_adagrad_run_is_the_optimizer_bit_for_bit(bowl, dtype):
    hp = {"lr": 0.5, "lr_decay": 0.01, "weight_decay": 0.0, "initial_accumulator_value": 0.1,
          "eps": 1e-8}
    t = bowl.run("adagrad", X0, 80, dtype=dtype, **hp)
    np.testing.assert_array_equal(t.x, drive(bowl, ob.Adagrad, X0, 80, dtype, **hp))


def test_adagrad_weight_decay_run(bowl):
    t = bowl.run("adagrad", X0, 30, lr=0.3, weight_decay=0.2)
    np.testing.assert_array_equal(t.x, drive(bowl, ob.Adagrad, X0, 30, np.float64, lr=0.3,
                                             weight_decay=0.2))


def test_trajectory_records_f_and_gradient_norm(bowl):
    t = bowl.run("rprop", X0, 25, lr=0.1)
    np.testing.assert_allclose(t.f, bowl.f(t.x), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(t.grad_norm, np.linalg.norm(bowl.grad(t.x), axis=1), rtol=1e-12)
    np.testing.assert_allclose(t.error, np.linalg.norm(t.x - bowl.minimizer, axis=1))
    assert t.x.shape == (26, 3) and not t.x.flags.writeable
    assert "Trajectory('rprop'" in repr(t) and "final error" in repr(t)


def test_run_defaults_match_the_optimizer_defaults(bowl):
    t = bowl.run("rprop", X0, 5)
    assert t.hyper == {"lr": 1e-2, "etas": (0.5, 1.2), "step_sizes": (1e-6, 50.0),
                       "variant": "irprop-"}
    np.testing.assert_array_equal(t.x, drive(bowl, ob.Rprop, X0, 5, np.float64))


def test_run_argument_errors(bowl):
    with pytest.raises(ValueError, match="method: expected one of"):
        bowl.run("lbfgs", X0, 5)
    with pytest.raises(ValueError, match="maximize: not a hyper-parameter of 'adagrad'"):
        bowl.run("adagrad", X0, 5, maximize=True)
    with pytest.raises(ValueError, match="etas: expected 0 < eta_minus < 1 < eta_plus"):
        bowl.run("rprop", X0, 5, etas=(1.5, 1.2))
    with pytest.raises(ValueError, match="variant: expected one of"):
        bowl.run("rprop", X0, 5, variant="rprop*")
    with pytest.raises(ValueError, match=r"x0: expected shape \(3,\)"):
        bowl.run("rprop", [1.0], 5)
    with pytest.raises(TypeError, match="dtype: expected float32 or float64"):
        bowl.run("rprop", X0, 5, dtype=np.int32)
    with pytest.raises(ValueError, match="steps: must be >= 0"):
        bowl.run("rprop", X0, -2)


# ------------------------------------------------------------------ the SGD family
LINEAR_CASES = [
    ("gd", {"lr": 0.04}),
    ("gd", {"lr": 0.03, "weight_decay": 0.2}),
    ("momentum", {"lr": 0.02, "momentum": 0.8}),
    ("momentum", {"lr": 0.03, "momentum": 0.5, "dampening": 0.2}),
    ("nesterov", {"lr": 0.02, "momentum": 0.7}),
    ("newton", {"lr": 0.6}),
    ("newton", {"lr": 1.0}),
]


@pytest.mark.parametrize("method, hp", LINEAR_CASES)
def test_run_follows_the_prediction(bowl, method, hp):
    pred = bowl.predict(method, X0, 80, **hp)
    run = bowl.run(method, X0, 80, **hp)
    scale = np.abs(pred.x).max()
    np.testing.assert_allclose(run.x, pred.x, rtol=1e-9, atol=1e-9 * scale)


@pytest.mark.parametrize("method", ["gd", "momentum", "nesterov"])
def test_measured_contraction_matches_the_rate(bowl, method):
    best = bowl.optimal(method)
    hp = {k: v for k, v in best.items() if k != "rate"}
    hp["lr"] *= 0.9
    run = bowl.run(method, X0, 200, **hp)
    assert run.measured_rate(100) == pytest.approx(bowl.rate(method, **hp), rel=0.02)
    res = ob.sweep(bowl, method, X0, 200, **hp)
    assert float(res.rate) == pytest.approx(bowl.rate(method, **hp), rel=0.02)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("method, hp", [m for m in LINEAR_CASES if m[0] != "newton"])
def test_sgd_family_run_is_the_optimizer_bit_for_bit(bowl, method, hp, dtype):
    hp = dict(hp, nesterov=True) if method == "nesterov" else hp
    t = bowl.run(method, X0, 60, dtype=dtype, **{k: v for k, v in hp.items() if k != "nesterov"})
    np.testing.assert_array_equal(t.x, drive(bowl, ob.SGD, X0, 60, dtype, **hp))


def test_newton_lands_on_the_minimiser_in_one_step(bowl):
    t = bowl.run("newton", X0, 3, lr=1.0)
    np.testing.assert_allclose(t.x[1], bowl.minimizer, rtol=1e-12, atol=1e-12)
    half = bowl.run("newton", X0, 1, lr=0.5)
    np.testing.assert_allclose(half.x[1], (X0 + bowl.minimizer) / 2, rtol=1e-12)


OTHER_RULES = [
    ("quickprop", ob.QuickProp, {"lr": 0.02, "max_growth": 1.5}),
    ("rmsprop", ob.RMSprop, {"lr": 0.01, "alpha": 0.9, "eps": 1e-8}),
    ("rmsprop", ob.RMSprop, {"lr": 0.01, "momentum": 0.5, "centered": True, "weight_decay": 0.1}),
    ("adam", ob.Adam, {"lr": 0.05, "betas": (0.8, 0.99)}),
    ("adam", ob.Adam, {"lr": 0.05, "amsgrad": True, "weight_decay": 0.01}),
    ("adam", ob.Adam, {"lr": 0.05, "weight_decay": 0.01, "decoupled_weight_decay": True}),
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("method, cls, hp", OTHER_RULES)
def test_other_rules_run_is_the_optimizer_bit_for_bit(bowl, method, cls, hp, dtype):
    t = bowl.run(method, X0, 60, dtype=dtype, **hp)
    np.testing.assert_array_equal(t.x, drive(bowl, cls, X0, 60, dtype, **hp))
    assert t.f[-1] < t.f[0]


def test_sweep_of_adam_and_booleans_equals_runs(bowl):
    lrs = np.array([0.01, 0.1])
    res = ob.sweep(bowl, "adam", X0, 50, lr=lrs, betas=(np.array([[0.8], [0.9]]), 0.99),
                   amsgrad=True)
    assert res.shape == (2, 2)
    for i, b1 in enumerate((0.8, 0.9)):
        for j, lr in enumerate(lrs):
            t = bowl.run("adam", X0, 50, lr=float(lr), betas=(b1, 0.99), amsgrad=True)
            assert res.final_error[i, j] == t.final_error


def test_every_method_is_compiled_into_the_simulator():
    """The simulator's methods: each rule that claims the bowl (by its name, or by its
    variants where the class's constructor chooses one), and torch.optim's gradient loops
    with the methods that choose their step from the whole vector."""
    from optbowl import _core, _registry

    named = {r.name for r in _registry.rules("bowl") if not r.bowl.by_variant}
    variants = {"irprop-", "rprop-", "rprop+", "irprop+", "backtrack"}
    gradient_loops = {"gd", "momentum", "nesterov", "newton", "steepest", "cg", "polyak"}
    assert set(_core.bowl_methods()) == named | variants | gradient_loops
    assert {"adagrad", "quickprop", "rmsprop", "adam", "lion"} <= named


# ------------------------------------------------------------------ sweep
def test_sweep_equals_individual_runs(bowl):
    lrs = np.array([0.001, 0.01, 0.1, 1.0])
    res = ob.sweep(bowl, "adagrad", X0, 120, lr=lrs)
    assert res.shape == (4,)
    for k, lr in enumerate(lrs):
        t = bowl.run("adagrad", X0, 120, lr=float(lr))
        assert res.final_error[k] == t.final_error
        assert res.rate[k] == pytest.approx(t.measured_rate(), rel=1e-12)
    assert res.initial_error == pytest.approx(np.linalg.norm(X0 - bowl.minimizer))
    assert not res.diverged.any()
    assert "SweepResult('adagrad'" in repr(res)


# Grids that mix what a sweep runs side by side (loops/lanes.hpp): lanes with different
# constant flags (momentum 0 and > 0, centred or not, AMSGrad or not, AdamW with and
# without decay), step-dependent hyper-parameters (lr_decay, Adam's bias corrections),
# iRprop+'s per-lane "loss went up", Newton's direction, and runs that diverge before and
# after the midpoint.
LANE_GRIDS = [
    *[("rprop", {"variant": v, "lr": np.geomspace(1e-3, 3.0, 6)[:, None, None],
                 "etas": (np.array([0.3, 0.5])[:, None], np.array([1.1, 1.6]))})
      for v in RPROP_VARIANTS],
    ("adagrad", {"lr": np.geomspace(1e-3, 1e3, 7)[:, None, None],
                 "lr_decay": np.array([0.0, 0.1])[:, None],
                 "weight_decay": np.array([0.0, 0.05]), "initial_accumulator_value": 0.5}),
    # lr 1e3 and 1e15 overflow x after and before the midpoint.
    ("gd", {"lr": np.concatenate([np.linspace(0.001, 2.6 / 40.0, 23), [1e3, 1e15]])}),
    ("momentum", {"lr": np.linspace(0.001, 0.09, 9)[:, None, None],
                  "momentum": np.array([0.0, 0.5, 0.97])[:, None],
                  "dampening": np.array([0.0, 0.3])}),
    ("momentum", {"lr": np.linspace(0.001, 0.09, 5)[:, None], "momentum": 0.9,
                  "weight_decay": np.array([0.0, 0.05, 0.0, 2.0])}),
    ("nesterov", {"lr": np.linspace(0.001, 0.09, 9)[:, None],
                  "momentum": np.array([0.1, 0.5, 0.9])}),
    ("newton", {"lr": np.array([0.25, 0.5, 1.0, 1.5, 1.99, 2.5, 1e6, 1e16])}),
    ("momentum", {"lr": np.array([0.01, 1e3, 1e15])[:, None], "momentum": np.array([0.0, 0.5])}),
    ("quickprop", {"lr": np.geomspace(1e-3, 0.1, 5)[:, None],
                   "max_growth": np.array([1.2, 1.75, 3.0])}),
    *[("rmsprop", {"lr": np.geomspace(1e-3, 0.3, 5)[:, None], "momentum": np.array([0.0, 0.5, 0.9]),
                   "centered": centered, "weight_decay": 0.01}) for centered in (False, True)],
    *[("adam", {"lr": np.geomspace(1e-3, 0.3, 4)[:, None, None],
                "weight_decay": np.array([0.0, 0.02])[:, None],
                "betas": (np.array([0.8, 0.9, 0.7]), 0.99), **flags})
      for flags in ({"amsgrad": True}, {"decoupled_weight_decay": True}, {})],
]


LANE_GRID_IDS = [
    "-".join([m, *(str(v) if isinstance(v, str) else f"{k}={v}" for k, v in g.items()
                   if isinstance(v, (str, bool)))])
    for m, g in LANE_GRIDS]


def assert_sweep_is_runs(res, ref, method, x0, steps, grid, dtype):
    """Every configuration of sweep result `res` is ref.run's, bit for bit, or diverged where
    the run stops being finite."""
    assert res.final_error.size >= 6
    for idx in np.ndindex(res.shape):
        hp = {}
        for k, v in grid.items():
            if k == "etas" or k == "betas":
                hp[k] = tuple(float(np.broadcast_to(h, res.shape)[idx]) for h in v)
            elif isinstance(v, np.ndarray):
                hp[k] = float(np.broadcast_to(v, res.shape)[idx])
            else:
                hp[k] = v
        t = ref.run(method, x0, steps, dtype=dtype, **hp)
        # A sweep stops a lane at its first gradient with an entry that is not finite (or
        # loss, for iRprop+, which reads it): |g| is a scaled norm, finite exactly then.
        finite = np.isfinite(t.x).all(axis=1) & np.isfinite(t.grad_norm)
        if grid.get("variant") == "irprop+":
            finite &= np.isfinite(t.f)
        if finite[:steps].all():  # the run never stopped: every number agrees
            assert not res.diverged[idx] or not res.final_error[idx] <= res.initial_error, (idx, hp)
            assert res.final_error[idx] == t.final_error, (idx, hp)
            assert res.rate[idx] == pytest.approx(t.measured_rate(), rel=1e-12, nan_ok=True), \
                (idx, hp)
        else:  # the sweep stops a run at its first non-finite gradient or loss
            assert res.diverged[idx] and res.final_error[idx] == np.inf, (idx, hp)
        assert res.diverged[idx] == (not res.final_error[idx] <= res.initial_error), (idx, hp)
    if method in ("gd", "newton"):  # the grids reach past the stable range, and overflow
        assert res.diverged.any() and not res.diverged.all()
        assert np.isinf(res.final_error).any()


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("method, grid", LANE_GRIDS, ids=LANE_GRID_IDS)
def test_sweep_lanes_equal_individual_runs(bowl, method, grid, dtype):
    steps = 40
    res = ob.sweep(bowl, method, X0, steps, dtype=dtype, **grid)
    ref, x0 = bowl, X0
    if method in LINEAR_METHODS:  # sweep runs them in the eigenbasis
        ref, x0 = bowl.to_eigenbasis(), bowl.eigenvectors.T @ X0
    assert_sweep_is_runs(res, ref, method, x0, steps, grid, dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("method, grid", LANE_GRIDS, ids=LANE_GRID_IDS)
def test_sweep_lanes_of_an_axis_aligned_bowl_equal_individual_runs(bowl, method, grid, dtype):
    # A diagonal A: the sweep's gradient skips the zeros, and methods that read neither the
    # loss nor Newton's direction take each coordinate's gradient and step in one pass.
    # Every result is still run()'s, bit for bit, diverging runs included.
    aligned = bowl.to_eigenbasis()
    x0 = bowl.eigenvectors.T @ X0
    res = ob.sweep(aligned, method, x0, 40, dtype=dtype, **grid)
    assert_sweep_is_runs(res, aligned, method, x0, 40, grid, dtype)


@pytest.mark.parametrize("method, grid", [(m, g) for m, g in LANE_GRIDS if m in LINEAR_METHODS])
def test_linear_sweeps_in_the_eigenbasis_agree_with_runs_in_the_original_one(bowl, method, grid):
    steps = 40
    res = ob.sweep(bowl, method, X0, steps, **grid)
    checked = 0
    for idx in np.ndindex(res.shape):
        hp = {k: float(np.broadcast_to(v, res.shape)[idx]) for k, v in grid.items()}
        t = bowl.run(method, X0, steps, **hp)
        if np.isfinite(t.x).all() and t.final_error > 1e-8 * res.initial_error:
            assert res.final_error[idx] == pytest.approx(t.final_error, rel=1e-9), (idx, hp)
            assert res.diverged[idx] == (not t.final_error <= res.initial_error), (idx, hp)
            checked += 1
    assert res.initial_error == pytest.approx(np.linalg.norm(X0 - bowl.minimizer), rel=1e-14)
    assert checked >= res.final_error.size // 2


def test_to_eigenbasis_is_the_same_bowl_rotated(bowl):
    eig = bowl.to_eigenbasis()
    Q = bowl.eigenvectors
    assert eig.is_axis_aligned and eig is bowl.to_eigenbasis()
    np.testing.assert_allclose(np.diag(eig.A), bowl.eigenvalues, rtol=0, atol=0)
    np.testing.assert_allclose(eig.minimizer, Q.T @ bowl.minimizer, rtol=1e-12)
    x = np.array([[0.3, -2.0, 5.0], [1.0, 1.0, 1.0]])
    np.testing.assert_allclose(eig.f(x @ Q), bowl.f(x), rtol=1e-12)
    np.testing.assert_allclose(eig.grad(x @ Q), bowl.grad(x) @ Q, rtol=1e-12, atol=1e-12)


def test_sweep_lanes_do_not_depend_on_threads_or_blocks(bowl):
    grid = {"lr": np.geomspace(1e-3, 0.3, 37)[:, None],
            "momentum": np.array([0.0, 0.3, 0.6, 0.9, 0.99])}
    before = ob.get_num_threads()
    try:
        ob.set_num_threads(1)
        one = ob.sweep(bowl, "momentum", X0, 30, **grid)
        ob.set_num_threads(2)
        two = ob.sweep(bowl, "momentum", X0, 30, **grid)
    finally:
        ob.set_num_threads(before)
    np.testing.assert_array_equal(one.final_error, two.final_error)
    np.testing.assert_array_equal(one.rate, two.rate)
    np.testing.assert_array_equal(one.diverged, two.diverged)
    single = ob.sweep(bowl, "momentum", X0, 30, lr=float(grid["lr"][5, 0]), momentum=0.9)
    assert float(single.final_error) == one.final_error[5, 3]


def test_sweep_of_scalars_is_one_configuration(bowl):
    res = ob.sweep(bowl, "adagrad", X0, 40, lr=0.2)
    assert res.shape == () and res.final_error.ndim == 0
    assert float(res.final_error) == bowl.run("adagrad", X0, 40, lr=0.2).final_error
    assert ob.sweep(bowl, "rprop", X0, 40).shape == ()


def test_sweep_broadcasts_pairs_and_arrays(bowl):
    lrs = np.array([[0.01], [0.1], [1.0]])
    eta_minus = np.array([0.3, 0.5])
    res = ob.sweep(bowl, "rprop", X0, 50, lr=lrs, etas=(eta_minus, 1.2), variant="rprop+",
                   dtype=np.float32)
    assert res.shape == (3, 2)
    np.testing.assert_array_equal(res.hyper["eta_minus"], np.broadcast_to(eta_minus, (3, 2)))
    for i in range(3):
        for j in range(2):
            t = bowl.run("rprop", X0, 50, lr=float(lrs[i, 0]), etas=(float(eta_minus[j]), 1.2),
                         variant="rprop+", dtype=np.float32)
            assert res.final_error[i, j] == t.final_error


def test_sweep_flags_divergence_and_is_thread_independent(bowl):
    # Adagrad never diverges on a bowl, but a huge initial step overshoots for a while:
    # 1 step with lr = 1e3 ends farther than it started.
    lrs = np.logspace(-3, 3, 40)
    before = ob.get_num_threads()
    try:
        ob.set_num_threads(1)
        one = ob.sweep(bowl, "adagrad", X0, 1, lr=lrs)
        ob.set_num_threads(2)
        two = ob.sweep(bowl, "adagrad", X0, 1, lr=lrs)
    finally:
        ob.set_num_threads(before)
    np.testing.assert_array_equal(one.final_error, two.final_error)
    assert one.diverged[-1] and not one.diverged[0]
    np.testing.assert_array_equal(one.diverged, ~(one.final_error <= one.initial_error))


def test_sweep_argument_errors(bowl):
    with pytest.raises(ValueError, match="do not broadcast"):
        ob.sweep(bowl, "adagrad", X0, 5, lr=np.ones(3), eps=np.ones(2))
    with pytest.raises(TypeError, match="etas: expected a pair"):
        ob.sweep(bowl, "rprop", X0, 5, etas=0.5)
    with pytest.raises(ValueError, match="lr: must be >= 0"):
        ob.sweep(bowl, "adagrad", X0, 5, lr=np.array([0.1, -0.1]))
    with pytest.raises(TypeError, match="bowl: expected a QuadraticBowl"):
        ob.sweep("bowl", "adagrad", X0, 5)
    with pytest.raises(ValueError, match="hyper: no configuration"):
        ob.sweep(bowl, "adagrad", X0, 5, lr=np.array([]))


SWEPT_ALONE = {  # method: (base hyper-parameters, the ones a sweep checks by their range)
    "rprop": ({}, ("lr",)),
    "adagrad": ({}, ("lr", "lr_decay", "weight_decay", "initial_accumulator_value", "eps")),
    "quickprop": ({}, ("lr", "max_growth")),
    "rmsprop": ({}, ("lr", "alpha", "eps", "weight_decay", "momentum")),
    "adam": ({}, ("lr", "eps", "weight_decay")),
    "gd": ({"lr": 0.01}, ("lr", "weight_decay")),
    "momentum": ({"lr": 0.01, "momentum": 0.5}, ("lr", "momentum", "dampening", "weight_decay")),
    "nesterov": ({"lr": 0.01, "momentum": 0.5}, ("lr", "momentum", "weight_decay")),
    "newton": ({}, ("lr",)),
}
PROBES = [-np.inf, -1e300, -1.0, -1e-300, 0.0, 1e-300, 1e-3, 0.5, 0.999, 1.0, 1.5, 50.0, 1e300,
          np.inf]


@pytest.mark.parametrize("method", sorted(SWEPT_ALONE))
def test_every_swept_hyper_parameter_accepts_an_interval(bowl, method):
    # sweep checks a swept hyper-parameter at its extremes only: exact only while the
    # values each one accepts (the others fixed) form an interval, and NaN is refused.
    from optbowl.bowl import _RULES

    base, names = SWEPT_ALONE[method]

    def accepts(name, v):
        try:
            _RULES[method](bowl, {**base, name: v})
            return True
        except (TypeError, ValueError):
            return False

    for name in names:
        ok = [accepts(name, v) for v in PROBES]
        assert any(ok), name
        first, last = ok.index(True), len(ok) - 1 - ok[::-1].index(True)
        assert all(ok[first:last + 1]), (name, [v for v, o in zip(PROBES, ok) if o])
        assert not accepts(name, float("nan")), name


def test_sweep_reports_a_bad_value_inside_the_range(bowl):
    with pytest.raises(ValueError, match="momentum"):
        ob.sweep(bowl, "momentum", X0, 5, lr=0.01, momentum=np.array([0.1, np.nan, 0.5]))
    with pytest.raises(ValueError, match="lr"):
        ob.sweep(bowl, "adagrad", X0, 5, lr=np.array([0.1, 0.2, -1.0, 0.3]))


@pytest.mark.parametrize("method, hyper, match", [
    ("momentum", {"lr": np.array([[0.01], [0.02]]), "momentum": np.array([0.5, np.nan])},
     "momentum"),
    ("gd", {"lr": np.array([0.1, np.inf])}, "lr"),
    ("rprop", {"lr": np.array([0.1, 0.2]), "etas": (0.5, np.array([1.5, 0.9]))}, "etas"),
    ("rprop", {"step_sizes": (np.array([1e-6, 2.0]), np.array([[1.0], [5.0]]))}, "step_sizes"),
    ("adam", {"lr": np.array([0.1, 0.2]), "betas": (np.array([0.9, 1.0]), 0.999)}, "betas"),
    ("rmsprop", {"alpha": np.array([[0.9], [0.99]]), "eps": np.array([1e-8, -1.0])}, "eps"),
])
def test_sweep_checks_every_configuration_before_running(bowl, method, hyper, match):
    with pytest.raises((TypeError, ValueError), match=match):
        ob.sweep(bowl, method, X0, 5, **hyper)
    with pytest.raises(ValueError, match="steps: must be >= 1"):
        ob.sweep(bowl, "adagrad", X0, 0)


PAIRED = [("rprop", "etas"), ("rprop", "step_sizes"), ("adam", "betas")]  # method, pair


def test_every_pair_is_probed():
    from optbowl.bowl import _PAIRS

    assert {pair for _, pair in PAIRED} == set(_PAIRS)


@pytest.mark.parametrize("method, pair", PAIRED)
def test_every_swept_pair_is_intervals_and_at_most_an_order(bowl, method, pair):
    # sweep checks a pair only where a half, or their difference, is smallest or largest:
    # exact only while the values it accepts are an interval of each half, cut at most by
    # one order between them (lo <= hi, lo < hi, or the reverse), and NaN is refused.
    from optbowl.bowl import _RULES

    def accepts(a, b):
        try:
            _RULES[method](bowl, {pair: (a, b)})
            return True
        except (TypeError, ValueError):
            return False

    ok = np.array([[accepts(a, b) for b in PROBES] for a in PROBES])
    assert ok.any()
    a_ok, b_ok = ok.any(axis=1), ok.any(axis=0)
    for side in (a_ok, b_ok):
        first, last = np.flatnonzero(side)[[0, -1]]
        assert side[first:last + 1].all(), pair
    a, b = np.meshgrid(PROBES, PROBES, indexing="ij")
    orders = [np.ones_like(ok), a <= b, a < b, a >= b, a > b]
    assert any(np.array_equal(ok, np.outer(a_ok, b_ok) & o) for o in orders), pair
    assert not accepts(np.nan, PROBES[7]) and not accepts(PROBES[7], np.nan)


def test_sweep_pair_checks_find_every_bad_row(bowl):
    # The rows _pair_extremes picks: a grid has a row the rule refuses exactly when one
    # of the picked rows is refused.
    from optbowl.bowl import _RULES, _pair_extremes

    def refused(a, b):
        try:
            _RULES["rprop"](bowl, {"step_sizes": (a, b)})
            return False
        except (TypeError, ValueError):
            return True

    rng = np.random.default_rng(5)
    valid = np.array([1e-6, 0.01, 0.5, 1.0, 2.0, 50.0])
    invalid = np.array([-1.0, 0.0, np.inf, -np.inf, np.nan])
    seen_order_only = 0
    for _ in range(600):
        size = int(rng.integers(1, 8))
        lo, hi = (np.where(rng.random(size) < 0.1, rng.choice(invalid, size),
                           rng.choice(valid, size)) for _ in range(2))
        seen_order_only += bool(np.all(np.isin(lo, valid) & np.isin(hi, valid)) and np.any(lo > hi))
        any_bad = any(refused(x, y) for x, y in zip(lo, hi))
        rows = _pair_extremes(lo, hi)
        assert all(0 <= r < size for r in rows)
        assert any(refused(lo[r], hi[r]) for r in rows) == any_bad, (lo, hi)
    assert seen_order_only > 50  # grids refused only for the order of their halves
