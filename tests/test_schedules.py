"""Learning-rate schedules: closed forms, and ReduceLROnPlateau step for step against torch."""

import math

import numpy as np
import pytest

import optbowl as ob
from optbowl import schedules


def _two_groups(cls=ob.SGD, **hp):
    hp.setdefault("lr", 1.0)
    return cls([{"params": [np.zeros(2)], "lr": 0.5}, {"params": [np.zeros(3)], "lr": 0.1}], **hp)


@pytest.mark.parametrize(
    "make, closed_form",
    [
        (lambda o: schedules.InverseTimeDecay(o), lambda lr0, k: lr0 / (k + 1)),
        (lambda o: schedules.InverseSquareDecay(o), lambda lr0, k: lr0 / (k + 1) ** 2),
        (
            lambda o: schedules.ExponentialDecay(o, beta=0.3),
            lambda lr0, k: lr0 * math.exp(-0.3 * k),
        ),
        (lambda o: schedules.StepDecay(o, step_size=3), lambda lr0, k: lr0 * 0.1 ** (k // 3)),
        (
            lambda o: schedules.StepDecay(o, step_size=2, gamma=0.5),
            lambda lr0, k: lr0 * 0.5 ** (k // 2),
        ),
    ],
)
def test_closed_forms(make, closed_form):
    opt = _two_groups(lr=1.0)
    sched = make(opt)
    assert sched.get_last_lr() == [0.5, 0.1]
    for k in range(1, 30):
        sched.step()
        want = [closed_form(0.5, k), closed_form(0.1, k)]
        assert [g["lr"] for g in opt.param_groups] == pytest.approx(want, rel=1e-15)
        assert sched.get_last_lr() == [g["lr"] for g in opt.param_groups]


def test_the_schedule_drives_the_optimizer():
    x = np.array([1.0])
    opt = ob.SGD(x, lr=0.5)
    sched = schedules.InverseTimeDecay(opt)
    for k in range(4):
        opt.step(np.array([1.0]))
        sched.step()
    assert x[0] == pytest.approx(1 - 0.5 * (1 + 1 / 2 + 1 / 3 + 1 / 4))


def test_rprop_lr_is_only_the_initial_step_size():
    a, b = np.zeros(2), np.zeros(2)
    opt = ob.Rprop([a, b], lr=0.1)
    sched = schedules.StepDecay(opt, step_size=1, gamma=0.5)
    opt.step([np.ones(2), None])  # a gets state with step size 0.1
    sched.step()  # lr = 0.05
    opt.step([np.ones(2), np.ones(2)])  # b starts at 0.05; a keeps adapting its own
    np.testing.assert_allclose(opt.state[0]["step_size"], 0.12)
    np.testing.assert_allclose(opt.state[1]["step_size"], 0.05)


@pytest.mark.parametrize(
    "cls", [ob.SGD, ob.Adam, ob.AdamW, ob.RMSprop, ob.Adagrad, ob.QuickProp, ob.Rprop]
)
def test_works_with_every_optimizer(cls):
    opt = cls(np.ones(3), lr=0.2)
    sched = schedules.ExponentialDecay(opt, beta=1.0)
    opt.step(np.ones(3))
    sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.2 / math.e)
    opt.step(np.ones(3))


def test_state_dict_round_trip():
    opt = _two_groups()
    sched = schedules.StepDecay(opt, step_size=2)
    for _ in range(3):
        sched.step()
    sd = sched.state_dict()
    other = schedules.StepDecay(_two_groups(), step_size=5)
    other.load_state_dict(sd)
    assert (
        other.step_size == 2 and other.last_step == 3 and other.get_last_lr() == sched.get_last_lr()
    )
    sched.step()
    other.step()
    assert other.get_last_lr() == sched.get_last_lr()
    with pytest.raises(ValueError, match="state_dict"):
        other.load_state_dict({"last_step": 1})


def test_bad_arguments():
    opt = _two_groups()
    with pytest.raises(TypeError, match="optimizer"):
        schedules.InverseTimeDecay(object())
    with pytest.raises(ValueError, match="beta"):
        schedules.ExponentialDecay(opt, beta=-1.0)
    with pytest.raises(ValueError, match="step_size"):
        schedules.StepDecay(opt, step_size=0)
    with pytest.raises(ValueError, match="gamma"):
        schedules.StepDecay(opt, step_size=1, gamma=-0.1)
    for kw, name in [
        (dict(mode="median"), "mode"),
        (dict(factor=1.0), "factor"),
        (dict(patience=-1), "patience"),
        (dict(threshold_mode="pct"), "threshold_mode"),
        (dict(cooldown=-2), "cooldown"),
        (dict(min_lr=[0.1]), "min_lr"),
        (dict(min_lr=-1.0), "min_lr"),
        (dict(eps=-1.0), "eps"),
        (dict(threshold=-0.1), "threshold"),
    ]:
        with pytest.raises(ValueError, match=name):
            schedules.ReduceLROnPlateau(opt, **kw)
    with pytest.raises(TypeError, match="metric"):
        schedules.ReduceLROnPlateau(opt).step("0.5")
    # A group added after the schedule was made: refused, not silently left unscheduled.
    for sched in (schedules.InverseTimeDecay(opt), schedules.ReduceLROnPlateau(opt)):
        opt.add_param_group({"params": [np.zeros(1)]})
        with pytest.raises(ValueError, match="param groups"):
            sched.step() if isinstance(sched, schedules.InverseTimeDecay) else sched.step(1.0)


def _metric_sequence(rng, n=400):
    """Long sequences with descents, exact plateaus, tiny improvements, spikes and NaN."""
    values, level = [], 10.0
    while len(values) < n:
        kind = rng.integers(0, 5)
        run = int(rng.integers(1, 25))
        if kind == 0:
            values += list(level * np.exp(-0.05 * np.arange(1, run + 1)))
        elif kind == 1:
            values += [level] * run
        elif kind == 2:
            values += list(level * (1 - 1e-5 * np.arange(1, run + 1)))  # below the rel threshold
        elif kind == 3:
            values += list(level + rng.standard_normal(run))
        else:
            values += [level * 2.0, float("nan"), level - 0.5]
        level = float(values[-1]) if np.isfinite(values[-1]) else level
    return [float(v) for v in values[:n]]


@pytest.mark.parametrize("mode", ["min", "max"])
@pytest.mark.parametrize("threshold_mode", ["rel", "abs"])
@pytest.mark.parametrize(
    "kw",
    [
        dict(),
        dict(patience=3, cooldown=2),
        dict(factor=0.5, patience=0, min_lr=0.01),
        dict(factor=0.7, patience=5, threshold=0.05, cooldown=4, min_lr=[1e-3, 1e-4]),
        dict(patience=2, eps=0.02),
    ],
)
def test_reduce_on_plateau_matches_torch(rng, mode, threshold_mode, kw):
    torch = pytest.importorskip("torch")
    metrics = _metric_sequence(rng)
    if mode == "max":
        metrics = [-m for m in metrics]
    opt = _two_groups()
    tparams = [torch.zeros(2, requires_grad=True), torch.zeros(3, requires_grad=True)]
    topt = torch.optim.SGD(
        [{"params": [tparams[0]], "lr": 0.5}, {"params": [tparams[1]], "lr": 0.1}]
    )
    args = dict(mode=mode, threshold_mode=threshold_mode, **kw)
    sched = schedules.ReduceLROnPlateau(opt, **args)
    tsched = torch.optim.lr_scheduler.ReduceLROnPlateau(topt, **args)
    reductions = 0
    for m in metrics:
        before = sched.get_last_lr()
        sched.step(m)
        tsched.step(m)
        assert [g["lr"] for g in opt.param_groups] == [g["lr"] for g in topt.param_groups]
        assert sched.get_last_lr() == tsched.get_last_lr()
        assert sched.num_bad_steps == tsched.num_bad_epochs
        assert sched.cooldown_counter == tsched.cooldown_counter
        reductions += sched.get_last_lr() != before
    assert reductions >= 2  # the sequence did exercise reductions


def test_reduce_on_plateau_state_dict_round_trip():
    opt = _two_groups()
    sched = schedules.ReduceLROnPlateau(opt, patience=1, cooldown=1)
    for m in [3.0, 3.0, 3.0, 2.0]:
        sched.step(m)
    other = schedules.ReduceLROnPlateau(_two_groups())
    other.load_state_dict(sched.state_dict())
    assert (other.best, other.patience, other.cooldown_counter) == (2.0, 1, sched.cooldown_counter)


# --------------------------------------------------------------- load_state_dict checks
SCHEDULES = [
    ("InverseTimeDecay", {}),
    ("InverseSquareDecay", {}),
    ("ExponentialDecay", {"beta": 0.3}),
    ("StepDecay", {"step_size": 2, "gamma": 0.5}),
    ("ReduceLROnPlateau", {"patience": 1, "cooldown": 2, "min_lr": [0.0, 0.01]}),
]
NAN = float("nan")
# Per key: values the constructor would refuse (or that no step could have left there).
BAD_STATE = {
    "last_step": [-1, 1.5, "3", None, True, 10**400, 2**53 + 1],
    "base_lrs": [[-0.1, 0.1], [NAN, 0.1], ["0.1", 0.1], [float("inf"), 0.1], [10**400, 0.1],
                 [0.1], 0.1],
    "_last_lr": [[-0.1, 0.1], [NAN, 0.1], [None, 0.1], [0.1, 0.1, 0.1]],
    "beta": [-1.0, NAN, "0.3", float("inf"), 10**400],
    "step_size": [0, -2, 2.0, "2", True],
    "gamma": [-0.5, NAN, "0.5", float("inf")],
    "mode": ["mid", 1, None],
    "factor": [1.0, -0.1, NAN, "0.1"],
    "patience": [-1, 1.5, "1"],
    "threshold": [-1e-4, NAN, "x"],
    "threshold_mode": ["relative", None],
    "cooldown": [-1, 0.5],
    "min_lrs": [[-1.0, 0.0], [0.0, NAN], [0.0], "0"],
    "eps": [-1e-8, NAN],
    "best": [NAN, "1.0", None],
    "num_bad_steps": [-1, 1.0, 10**400],
    "cooldown_counter": [-1, 0.5, "0"],
}
LOAD_CASES = [(name, kw, key, value) for name, kw in SCHEDULES
              for key, values in BAD_STATE.items() for value in values
              if key in getattr(schedules, name)(_two_groups(), **kw).state_dict()]


def _advance(sched, k=3):
    for i in range(k):
        if isinstance(sched, schedules.ReduceLROnPlateau):
            sched.step(1.0)
        else:
            sched.step()


@pytest.mark.parametrize(
    "name, kw, key, value", LOAD_CASES,
    ids=[f"{n}-{k}-{v!r}"[:60] + f"-{i}" for i, (n, _, k, v) in enumerate(LOAD_CASES)])
def test_load_state_dict_checks_every_entry_as_the_constructor_does(name, kw, key, value):
    opt = _two_groups()
    sched = getattr(schedules, name)(opt, **kw)
    _advance(sched)
    sd = sched.state_dict()
    sd[key] = value
    before, lrs = sched.state_dict(), [g["lr"] for g in opt.param_groups]
    with pytest.raises((TypeError, ValueError), match=r"^state_dict\['" + key):
        sched.load_state_dict(sd)
    assert sched.state_dict() == before
    assert [g["lr"] for g in opt.param_groups] == lrs
    _advance(sched, 1)  # still a working schedule


@pytest.mark.parametrize("name, kw", SCHEDULES, ids=[n for n, _ in SCHEDULES])
def test_a_checked_state_dict_still_round_trips(name, kw):
    a = getattr(schedules, name)(_two_groups(), **kw)
    _advance(a, 5)
    b = getattr(schedules, name)(_two_groups(), **kw)
    b.load_state_dict(a.state_dict())
    b.optimizer.load_state_dict(a.optimizer.state_dict())  # the lrs a has set
    assert b.state_dict() == a.state_dict()
    _advance(a, 2)
    _advance(b, 2)
    assert b.get_last_lr() == a.get_last_lr()


def test_a_metric_beyond_float64_is_a_named_value_error():
    sched = schedules.ReduceLROnPlateau(_two_groups())
    before = sched.state_dict()
    with pytest.raises(ValueError, match="^metric"):
        sched.step(10**400)
    assert sched.state_dict() == before
