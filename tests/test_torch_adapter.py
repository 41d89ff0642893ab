"""optbowl.torch against torch.optim: bit-identical training, state_dicts both ways, errors."""

import copy
import io
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")
obt = pytest.importorskip("optbowl.torch")

DTYPES = [torch.float32, torch.float64]
SHAPES = [(37, 5), (11,), (3, 4, 2), (1,), (4099,)]
# Sizes that are 64-byte multiples, without the scalar tail torch's fused SGD and Adam round
# otherwise (optbowl rounds it as they do: every size is tested in test_torch_tails.py).
FUSED_SHAPES = [(48, 16), (16,), (2, 8, 4), (1024,), (32,)]


def make_params(dtype, seed=0, shapes=SHAPES):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=g, dtype=dtype).requires_grad_() for s in shapes]


def clone_params(params):
    return [p.detach().clone().requires_grad_() for p in params]


def set_grads(params, step, gen, skip=()):
    """Gradients with sign changes, exact zeros and NaN-free ties; None for skipped indices."""
    for i, p in enumerate(params):
        if i in skip:
            p.grad = None
            continue
        g = torch.randn(p.shape, generator=gen, dtype=p.dtype)
        g[torch.rand(p.shape, generator=gen) < 0.1] = 0.0
        p.grad = g


def skipped(step):
    """Parameter 1 has no gradient on every third step; parameter 2 none before step 5."""
    out = set()
    if step % 3 == 0:
        out.add(1)
    if step < 5:
        out.add(2)
    return out


def groups(params, **per_group):
    return [{"params": params[:2]}, {"params": params[2:], **per_group}]


def close(a, b, tol):
    """Equal bit for bit (tol None), or to a relative and absolute tol."""
    if tol is None:
        return torch.equal(a, b)
    return torch.allclose(a, b, rtol=tol, atol=tol, equal_nan=True)


def train_side_by_side(
    make_torch, make_ours, dtype, steps, params=None, shapes=SHAPES, tol=None, skip=skipped
):
    """Run both optimizers on identical copies and the same gradients; compare every step."""
    ref_params = make_params(dtype, shapes=shapes) if params is None else params
    our_params = clone_params(ref_params)
    ref, ours = make_torch(ref_params), make_ours(our_params)
    gen_ref, gen_ours = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    for t in range(steps):
        set_grads(ref_params, t, gen_ref, skip(t))
        set_grads(our_params, t, gen_ours, skip(t))
        ref.step()
        ours.step()
        for k, (a, b) in enumerate(zip(ref_params, our_params)):
            assert close(a, b, tol), f"step {t}, params[{k}] differ"
    return ref, ours, ref_params, our_params


def assert_same_state(ref, ours, tol=None):
    sa, sb = ref.state_dict(), ours.state_dict()
    assert sa["param_groups"] == sb["param_groups"]
    assert sa["state"].keys() == sb["state"].keys()
    for i in sa["state"]:
        assert sa["state"][i].keys() == sb["state"][i].keys()
        for key, value in sa["state"][i].items():
            other = sb["state"][i][key]
            assert value.dtype == other.dtype and value.device == other.device, key
            assert close(value, other, None if key == "step" else tol), (i, key)


def test_import_optbowl_does_not_import_torch():
    code = "import sys, optbowl; assert 'torch' not in sys.modules, 'torch imported'; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-1] == "ok"


# ---------------------------------------------------------------------------- Rprop


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("foreach", [False, True, None])
def test_rprop_bit_identical_to_torch(dtype, foreach):
    def build(cls, kw):
        return lambda ps: cls(groups(ps, lr=0.05, etas=(0.3, 1.5), step_sizes=(1e-3, 0.2),
                                     maximize=True), **kw)

    ref, ours, _, _ = train_side_by_side(
        build(torch.optim.Rprop, {"foreach": foreach}),
        build(obt.Rprop, {"foreach": foreach}),
        dtype,
        steps=60,
    )
    assert_same_state(ref, ours)


@pytest.mark.parametrize("name", ["Rprop", "Adagrad", "SGD", "RMSprop", "Adam", "AdamW"])
def test_defaults_and_signature_match_torch(name):
    import inspect

    ours, theirs = getattr(obt, name), getattr(torch.optim, name)
    a = dict(inspect.signature(ours.__init__).parameters)
    b = inspect.signature(theirs.__init__).parameters
    # float32 state for 16-bit parameters: keyword-only, last, off unless asked
    assert list(a)[-1] == "state_dtype"
    assert a["state_dtype"].kind == inspect.Parameter.KEYWORD_ONLY
    assert a.pop("state_dtype").default is None
    # the other addition torch does not have: low-precision state, keyword-only, last
    extra = ["state_bits", "stochastic_rounding", "seed"]
    if list(a)[-3:] == extra:
        assert name in ("Adagrad", "Adam", "AdamW")
        assert all(a[k].kind == inspect.Parameter.KEYWORD_ONLY for k in extra)
        assert a["state_bits"].default == 32  # torch's float state unless asked
        for k in extra:
            del a[k]
    assert list(a) == list(b)
    for arg in a:
        assert a[arg].default == b[arg].default, arg
        assert a[arg].kind == b[arg].kind, arg
    p = [torch.zeros(3, requires_grad=True)]
    assert ours(p).defaults == theirs(p).defaults


# ---------------------------------------------------------------------------- Adagrad


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("fused", [None, True])
def test_adagrad_bit_identical_to_torch_fused(dtype, fused):
    hp = {"lr": 0.3, "lr_decay": 0.01, "weight_decay": 0.05, "initial_accumulator_value": 0.2,
          "eps": 1e-8}

    def build_ref(ps):
        return torch.optim.Adagrad(groups(ps, lr=0.1, weight_decay=0.0, maximize=True), fused=True,
                                   **hp)

    def build_ours(ps):
        return obt.Adagrad(groups(ps, lr=0.1, weight_decay=0.0, maximize=True), fused=fused, **hp)

    ref, ours, _, _ = train_side_by_side(build_ref, build_ours, dtype, steps=60)
    sa, sb = ref.state_dict(), ours.state_dict()
    for i in sa["state"]:
        for key in ("step", "sum"):
            assert torch.equal(sa["state"][i][key], sb["state"][i][key]), (i, key)
    if fused:
        assert_same_state(ref, ours)


def test_adagrad_state_is_made_when_built_as_torch_does():
    ps = make_params(torch.float32)
    ref = torch.optim.Adagrad(ps, initial_accumulator_value=0.5, fused=True)
    ours = obt.Adagrad(clone_params(ps), initial_accumulator_value=0.5, fused=True)
    assert_same_state(ref, ours)


# ---------------------------------------------------------------------------- SGD, RMSprop, Adam


# id -> (torch class, optbowl class, constructor keywords for both, per-group keywords of the
# second group, parameter shapes, tolerance: None for bit for bit)
RMSPROP_TOL = {torch.float32: 1e-5, torch.float64: 1e-12}  # torch has no fused RMSprop
FAMILY = {
    "sgd-momentum": ("SGD", dict(lr=0.05, momentum=0.9), dict(lr=0.01), SHAPES, False),
    "sgd-nesterov-fused": (
        "SGD",
        dict(lr=0.02, momentum=0.8, nesterov=True, weight_decay=0.01, fused=True),
        dict(lr=0.05, momentum=0.5),
        FUSED_SHAPES,
        False,
    ),
    "sgd-dampening-maximize-foreach": (
        "SGD",
        dict(lr=0.01, momentum=0.7, dampening=0.3, weight_decay=0.1, maximize=True, foreach=True),
        dict(lr=0.03),
        SHAPES,
        False,
    ),
    "sgd-plain-and-momentum-groups": (
        "SGD",
        dict(lr=0.1, weight_decay=0.05, foreach=False),
        dict(momentum=0.9, lr=0.01),
        SHAPES,
        False,
    ),
    "rmsprop": ("RMSprop", dict(foreach=False), dict(lr=0.001), SHAPES, True),
    "rmsprop-centered-momentum": (
        "RMSprop",
        dict(lr=0.005, centered=True, momentum=0.5, foreach=False),
        dict(centered=False, momentum=0.0, lr=0.01),
        SHAPES,
        True,
    ),
    "rmsprop-wd-maximize-foreach": (
        "RMSprop",
        dict(lr=0.01, alpha=0.7, eps=1e-4, weight_decay=0.1, maximize=True, foreach=True),
        dict(momentum=0.9, centered=True),
        SHAPES,
        True,
    ),
    "adam": ("Adam", dict(lr=0.01, fused=True), dict(lr=0.003), FUSED_SHAPES, False),
    "adam-amsgrad-l2": (
        "Adam",
        dict(lr=0.01, weight_decay=0.1, amsgrad=True, fused=True),
        dict(amsgrad=False, lr=0.02),
        FUSED_SHAPES,
        False,
    ),
    "adam-betas-maximize-decoupled": (
        "Adam",
        dict(lr=0.01, betas=(0.5, 0.9), eps=1e-6, maximize=True, fused=True),
        dict(weight_decay=0.05, decoupled_weight_decay=True),
        FUSED_SHAPES,
        False,
    ),
    "adamw": (
        "AdamW", dict(lr=0.01, fused=True), dict(lr=0.05, weight_decay=0.1), FUSED_SHAPES, False
    ),
    "adamw-amsgrad": (
        "AdamW",
        dict(lr=0.02, weight_decay=0.05, amsgrad=True, maximize=True, fused=True),
        dict(betas=(0.8, 0.99)),
        FUSED_SHAPES,
        False,
    ),
}


def family_case(case, dtype):
    """(torch factory, optbowl factory, shapes, tolerance, skipped gradients) of a FAMILY entry."""
    name, kw, group_kw, shapes, approximate = FAMILY[case]

    def build(cls):
        return lambda ps: cls(groups(ps, **group_kw), **kw)

    tol = RMSPROP_TOL[dtype] if approximate else None
    # torch's fused SGD fails on a step that mixes parameters with and without a momentum
    # buffer, so there every parameter has a gradient on every step.
    skip = (lambda t: set()) if name == "SGD" and kw.get("fused") else skipped
    return build(getattr(torch.optim, name)), build(getattr(obt, name)), shapes, tol, skip


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", sorted(FAMILY))
def test_family_matches_torch(dtype, case):
    """60 steps, two param groups, gradients missing on some steps: the parameters after
    every step and the final state (same keys, dtypes and values) are torch's."""
    make_torch, make_ours, shapes, tol, skip = family_case(case, dtype)
    ref, ours, _, _ = train_side_by_side(
        make_torch, make_ours, dtype, steps=60, shapes=shapes, tol=tol, skip=skip
    )
    assert_same_state(ref, ours, tol)


def test_sgd_state_is_torchs_with_and_without_momentum():
    ps = make_params(torch.float32)
    opt = obt.SGD([{"params": ps[:2], "momentum": 0.9}, {"params": ps[2:]}], lr=0.1)
    set_grads(ps, 0, torch.Generator().manual_seed(0), skip={1})
    grads = [None if p.grad is None else p.grad.clone() for p in ps]
    opt.step()
    st = opt.state_dict()["state"]
    assert set(st) == {0}, "only parameters that stepped with momentum have state"
    assert set(st[0]) == {"momentum_buffer"}
    assert torch.equal(st[0]["momentum_buffer"], grads[0]), "the buffer starts as the gradient"


def test_sgd_momentum_switched_on_later_matches_torch():
    ref_params = make_params(torch.float64)
    our_params = clone_params(ref_params)
    ref, ours = torch.optim.SGD(ref_params, lr=0.05), obt.SGD(our_params, lr=0.05)
    gen_a, gen_b = torch.Generator().manual_seed(4), torch.Generator().manual_seed(4)
    for t in range(30):
        if t == 10:
            for opt in (ref, ours):
                opt.param_groups[0]["momentum"] = 0.9
                opt.param_groups[0]["dampening"] = 0.25
        if t == 20:
            for opt in (ref, ours):
                opt.param_groups[0]["momentum"] = 0.0
        set_grads(ref_params, t, gen_a, skipped(t))
        set_grads(our_params, t, gen_b, skipped(t))
        ref.step()
        ours.step()
        assert all(torch.equal(a, b) for a, b in zip(ref_params, our_params)), t
    assert_same_state(ref, ours)


def test_sgd_checkpoint_with_none_buffers_loads():
    """Older torch stored momentum_buffer None before a parameter's first momentum step."""
    ref_params = make_params(torch.float32)
    our_params = clone_params(ref_params)
    ref = torch.optim.SGD(ref_params, lr=0.05, momentum=0.9, dampening=0.5)
    ours = obt.SGD(our_params, lr=0.05, momentum=0.9, dampening=0.5)
    sd = copy.deepcopy(ours.state_dict())
    sd["state"] = {i: {"momentum_buffer": None} for i in range(len(SHAPES))}
    ours.load_state_dict(sd)
    gen_a, gen_b = torch.Generator().manual_seed(2), torch.Generator().manual_seed(2)
    for t in range(5):
        set_grads(ref_params, t, gen_a)
        set_grads(our_params, t, gen_b)
        ref.step()
        ours.step()
        assert all(torch.equal(a, b) for a, b in zip(ref_params, our_params)), t
    assert_same_state(ref, ours)


def test_a_step_is_one_call_per_state_layout(monkeypatch):
    """Groups with and without a momentum buffer: two calls, the second without buffers."""
    from optbowl import _core

    calls = []

    class Counting:
        check_calls = staticmethod(_core.check_calls)  # every call's arrays, before any runs

        def sgd(self, params, grads, buffers, *rest):
            calls.append((len(params), None if buffers is None else len(buffers)))
            _core.sgd(params, grads, buffers, *rest)

    monkeypatch.setattr(obt, "_core", Counting())
    ps = make_params(torch.float32)
    opt = obt.SGD(
        [
            {"params": ps[:2], "momentum": 0.9},
            {"params": ps[2:4]},
            {"params": ps[4:], "momentum": 0.5},
        ],
        lr=0.1,
    )
    set_grads(ps, 0, torch.Generator().manual_seed(0))
    opt.step()
    assert sorted(calls, key=str) == sorted([(3, 3), (2, None)], key=str)


@pytest.mark.parametrize(
    "name, kw, keys",
    [
        ("RMSprop", {}, {"step", "square_avg"}),
        (
            "RMSprop",
            {"centered": True, "momentum": 0.5},
            {"step", "square_avg", "grad_avg", "momentum_buffer"},
        ),
        ("Adam", {}, {"step", "exp_avg", "exp_avg_sq"}),
        ("Adam", {"amsgrad": True}, {"step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"}),
        ("AdamW", {"fused": True}, {"step", "exp_avg", "exp_avg_sq"}),
        ("QuickProp", {}, {"step", "prev_grad", "prev_step"}),
    ],
)
def test_state_keys_and_step_type(name, kw, keys):
    ps = make_params(torch.float32)
    opt = getattr(obt, name)(ps, **kw)
    gen = torch.Generator().manual_seed(0)
    for t in range(2):
        set_grads(ps, t, gen)
        opt.step()
    for st in opt.state_dict()["state"].values():
        assert set(st) == keys
        assert st["step"].shape == () and st["step"].dtype == torch.float32
        assert st["step"].item() == 2.0
        assert all(st[k].dtype == torch.float32 for k in keys)


# ---------------------------------------------------------------------------- QuickProp


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kw", [dict(), dict(lr=0.05, max_growth=1.5, maximize=True)])
def test_quickprop_equals_optbowl_quickprop(dtype, kw):
    """No torch counterpart: the same results as optbowl.QuickProp on NumPy copies."""
    import optbowl

    ps = make_params(dtype)
    arrays = [p.detach().numpy().copy() for p in ps]
    ours = obt.QuickProp(groups(ps, lr=0.02), **kw)
    ref = optbowl.QuickProp(groups(arrays, lr=0.02), **kw)
    gen = torch.Generator().manual_seed(3)
    for t in range(60):
        set_grads(ps, t, gen)
        ours.step()
        ref.step([p.grad.numpy().copy() for p in ps])
        for k, (p, a) in enumerate(zip(ps, arrays)):
            assert torch.equal(p.detach(), torch.from_numpy(a)), f"step {t}, params[{k}]"
    for i, p in enumerate(ps):
        for name in ("prev_grad", "prev_step"):
            assert torch.equal(ours.state[p][name], torch.from_numpy(ref.state[i][name])), (i, name)
        assert ours.state[p]["step"].item() == 60


# ---------------------------------------------------------------------------- real models


def small_model(dtype):
    torch.manual_seed(3)
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 3)
    ).to(dtype)


def small_mlp(dtype):
    """Every parameter's size a 64-byte multiple, for torch's fused kernels (see FUSED_SHAPES)."""
    torch.manual_seed(3)
    layers = [torch.nn.Linear(16, 32), torch.nn.Tanh(), torch.nn.Linear(32, 16)]
    return torch.nn.Sequential(*layers).to(dtype)


# kind -> (torch factory, optbowl factory, model factory, input shape of one example)
MODEL_CASES = {
    "rprop": (
        lambda ps: torch.optim.Rprop(ps, lr=0.01),
        lambda ps: obt.Rprop(ps, lr=0.01),
        small_model,
        (1, 8, 8),
    ),
    "adagrad": (
        lambda ps: torch.optim.Adagrad(ps, lr=0.1, lr_decay=1e-3, weight_decay=1e-4, fused=True),
        lambda ps: obt.Adagrad(ps, lr=0.1, lr_decay=1e-3, weight_decay=1e-4),
        small_model,
        (1, 8, 8),
    ),
    "sgd-nesterov": (
        lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-4),
        lambda ps: obt.SGD(ps, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-4),
        small_model,
        (1, 8, 8),
    ),
    "adam": (
        lambda ps: torch.optim.Adam(ps, lr=0.01, fused=True),
        lambda ps: obt.Adam(ps, lr=0.01),
        small_mlp,
        (16,),
    ),
    "adamw-amsgrad": (
        lambda ps: torch.optim.AdamW(ps, lr=0.01, amsgrad=True, fused=True),
        lambda ps: obt.AdamW(ps, lr=0.01, amsgrad=True),
        small_mlp,
        (16,),
    ),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", sorted(MODEL_CASES))
def test_training_a_model_matches_torch(dtype, kind):
    make_torch, make_ours, make_model, example = MODEL_CASES[kind]
    gen = torch.Generator().manual_seed(11)
    x = torch.randn(16, *example, generator=gen, dtype=dtype)
    y = torch.randint(0, 3, (16,), generator=gen)
    models = [make_model(dtype), make_model(dtype)]
    opts = [make_torch(models[0].parameters()), make_ours(models[1].parameters())]
    losses = [[], []]
    for _ in range(25):
        for model, opt, record in zip(models, opts, losses):
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            record.append(loss.item())
    assert losses[0] == losses[1]
    assert losses[1][-1] < losses[1][0]
    for a, b in zip(models[0].parameters(), models[1].parameters()):
        assert torch.equal(a, b)


# ---------------------------------------------------------------------------- state_dict


# kind -> (torch factory, optbowl factory, shapes, tolerance per dtype or None: bit for bit)
CASES = {
    "rprop": (
        lambda ps: torch.optim.Rprop(groups(ps, lr=0.02, etas=(0.4, 1.3)), foreach=True),
        lambda ps: obt.Rprop(groups(ps, lr=0.02, etas=(0.4, 1.3))),
        SHAPES,
        None,
    ),
    "adagrad": (
        lambda ps: torch.optim.Adagrad(groups(ps, lr=0.2, lr_decay=0.01), weight_decay=0.1,
                                       fused=True),
        lambda ps: obt.Adagrad(groups(ps, lr=0.2, lr_decay=0.01), weight_decay=0.1, fused=True),
        SHAPES,
        None,
    ),
    "sgd": (
        lambda ps: torch.optim.SGD(groups(ps, lr=0.02, dampening=0.2), lr=0.05, momentum=0.9),
        lambda ps: obt.SGD(groups(ps, lr=0.02, dampening=0.2), lr=0.05, momentum=0.9),
        SHAPES,
        None,
    ),
    "rmsprop": (
        lambda ps: torch.optim.RMSprop(groups(ps, centered=True), lr=0.01, momentum=0.5),
        lambda ps: obt.RMSprop(groups(ps, centered=True), lr=0.01, momentum=0.5),
        SHAPES,
        RMSPROP_TOL,
    ),
    "adam": (
        lambda ps: torch.optim.Adam(groups(ps, lr=0.02), amsgrad=True, weight_decay=0.1,
                                    fused=True),
        lambda ps: obt.Adam(groups(ps, lr=0.02), amsgrad=True, weight_decay=0.1, fused=True),
        FUSED_SHAPES,
        None,
    ),
    "adamw": (
        lambda ps: torch.optim.AdamW(groups(ps, weight_decay=0.2), lr=0.01, fused=True),
        lambda ps: obt.AdamW(groups(ps, weight_decay=0.2), lr=0.01, fused=True),
        FUSED_SHAPES,
        None,
    ),
    # no torch counterpart: optbowl to optbowl
    "quickprop": (
        lambda ps: obt.QuickProp(groups(ps, lr=0.03), max_growth=1.5),
        lambda ps: obt.QuickProp(groups(ps, lr=0.03), max_growth=1.5),
        SHAPES,
        None,
    ),
}


def _roundtrip(sd):
    """Through torch.save/torch.load, as a checkpoint goes to disk."""
    buf = io.BytesIO()
    torch.save(sd, buf)
    buf.seek(0)
    return torch.load(buf)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", sorted(CASES))
@pytest.mark.parametrize("direction", ["torch->optbowl", "optbowl->torch"])
def test_state_dict_moves_between_torch_and_optbowl(dtype, kind, direction):
    make_torch, make_ours, shapes, tols = CASES[kind]
    tol = None if tols is None else tols[dtype]
    first, second = ((make_torch, make_ours) if direction == "torch->optbowl"
                     else (make_ours, make_torch))

    # Train the first optimizer, checkpoint it, and continue it as the reference.
    params = make_params(dtype, shapes=shapes)
    opt = first(params)
    gen = torch.Generator().manual_seed(5)
    for t in range(20):
        set_grads(params, t, gen, skipped(t))
        opt.step()
    checkpoint = _roundtrip(opt.state_dict())
    resumed_params = clone_params(params)
    resumed = second(resumed_params)
    resumed.load_state_dict(checkpoint)
    assert_same_state(opt, resumed)

    gen_a, gen_b = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
    for t in range(20, 50):
        set_grads(params, t, gen_a, skipped(t))
        set_grads(resumed_params, t, gen_b, skipped(t))
        opt.step()
        resumed.step()
        for k, (a, b) in enumerate(zip(params, resumed_params)):
            assert close(a, b, tol), f"step {t}, params[{k}]"
    assert_same_state(opt, resumed, tol)


def test_state_dict_format_is_torchs():
    ps = make_params(torch.float32)
    opt = obt.Rprop(ps)
    set_grads(ps, 0, torch.Generator().manual_seed(0))
    opt.step()
    sd = opt.state_dict()
    assert set(sd) == {"state", "param_groups"}
    st = sd["state"][0]
    assert set(st) == {"step", "prev", "step_size"}
    assert st["step"].shape == () and st["step"].dtype == torch.float32 and st["step"].item() == 1.0
    assert sd["param_groups"][0]["params"] == list(range(len(SHAPES)))


def test_old_checkpoint_with_integer_steps_loads():
    ps = make_params(torch.float64)
    opt = obt.Rprop(ps)
    gen = torch.Generator().manual_seed(0)
    set_grads(ps, 0, gen)
    opt.step()
    sd = copy.deepcopy(opt.state_dict())
    for st in sd["state"].values():
        st["step"] = 1
    opt2 = obt.Rprop(clone_params(ps))
    opt2.load_state_dict(sd)
    assert all(torch.is_tensor(st["step"]) for st in opt2.state.values())


# ---------------------------------------------------------------------------- torch machinery


def test_zero_grad_hooks_closure_and_version_counter():
    ps = make_params(torch.float32)
    opt = obt.Rprop(ps)
    calls = []
    opt.register_step_pre_hook(lambda o, args, kwargs: calls.append(("pre", o)))
    opt.register_step_post_hook(lambda o, args, kwargs: calls.append(("post", o)))
    from torch.optim.optimizer import register_optimizer_step_pre_hook

    handle = register_optimizer_step_pre_hook(lambda o, a, k: calls.append(("global", o)))
    try:
        versions = [p._version for p in ps]
        pointers = [p.data_ptr() for p in ps]

        def closure():
            set_grads(ps, 0, torch.Generator().manual_seed(0))
            return torch.tensor(1.5)

        assert opt.step(closure).item() == 1.5
    finally:
        handle.remove()
    assert [c[0] for c in calls] == ["global", "pre", "post"] and all(c[1] is opt for c in calls)
    assert all(p._version > v for p, v in zip(ps, versions)), \
        "in-place update must bump the version"
    assert [p.data_ptr() for p in ps] == pointers, "parameters are updated in place"
    prev_ptrs = [opt.state[p]["prev"].data_ptr() for p in ps]
    opt.zero_grad()
    assert all(p.grad is None for p in ps)
    opt.step()  # no gradients: nothing happens
    set_grads(ps, 1, torch.Generator().manual_seed(1))
    opt.step()
    assert [opt.state[p]["prev"].data_ptr() for p in ps] == prev_ptrs, "state is updated in place"
    assert all(opt.state[p]["step"].item() == 2 for p in ps)


SCHEDULED = {
    "adagrad": (lambda ps, **kw: torch.optim.Adagrad(ps, fused=True, **kw), obt.Adagrad, SHAPES),
    "sgd": (
        lambda ps, **kw: torch.optim.SGD(ps, momentum=0.9, **kw),
        lambda ps, **kw: obt.SGD(ps, momentum=0.9, **kw),
        SHAPES,
    ),
    "adam": (lambda ps, **kw: torch.optim.Adam(ps, fused=True, **kw), obt.Adam, FUSED_SHAPES),
}


@pytest.mark.parametrize("kind", sorted(SCHEDULED))
def test_lr_scheduler_and_add_param_group_match_torch(kind):
    make_torch, make_ours, shapes = SCHEDULED[kind]

    def run(make, ps):
        opt = make(ps[:3], lr=0.5)
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=4, gamma=0.5)
        gen = torch.Generator().manual_seed(2)
        for t in range(20):
            if t == 6:
                opt.add_param_group({"params": ps[3:], "lr": 0.1})
            set_grads(ps, t, gen, skip=() if t >= 6 else {3, 4})
            opt.step()
            sched.step()
        return ps

    a = run(make_torch, make_params(torch.float64, shapes=shapes))
    b = run(make_ours, make_params(torch.float64, shapes=shapes))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a[0], make_params(torch.float64, shapes=shapes)[0])


@pytest.mark.parametrize("name", ["SGD", "RMSprop", "Adam", "AdamW", "QuickProp"])
def test_zero_grad_then_step_changes_nothing(name):
    ps = make_params(torch.float32)
    opt = getattr(obt, name)(ps, **({"momentum": 0.9} if name == "SGD" else {}))
    set_grads(ps, 0, torch.Generator().manual_seed(0))
    opt.step()
    params = [p.detach().clone() for p in ps]
    state = copy.deepcopy(opt.state_dict()["state"])
    versions = [p._version for p in ps]
    opt.zero_grad()
    assert all(p.grad is None for p in ps)
    opt.step()
    assert all(torch.equal(p, q) for p, q in zip(ps, params))
    assert [p._version for p in ps] == versions
    after = opt.state_dict()["state"]
    assert all(torch.equal(after[i][k], v) for i in state for k, v in state[i].items())
    set_grads(ps, 1, torch.Generator().manual_seed(1))
    opt.step()
    assert all(not torch.equal(p, q) for p, q in zip(ps, params)), "a step with gradients moves"


def test_deepcopy_of_the_optimizer_keeps_working():
    ps = make_params(torch.float32)
    opt = obt.Adagrad(ps)
    clone = copy.deepcopy({"params": ps, "opt": opt})
    for params, o in [(ps, opt), (clone["params"], clone["opt"])]:
        set_grads(params, 0, torch.Generator().manual_seed(0))
        o.step()
    assert all(torch.equal(x, y) for x, y in zip(ps, clone["params"]))


# ---------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "make, error, words",
    [
        (lambda ps: obt.Rprop(ps, lr=-1.0), ValueError, "lr"),
        (lambda ps: obt.Rprop(ps, etas=(1.2, 0.5)), ValueError, "etas"),
        (lambda ps: obt.Rprop(ps, step_sizes=(1.0, 0.1)), ValueError, "step_sizes"),
        (lambda ps: obt.Rprop(ps, differentiable=True), ValueError, "differentiable"),
        (lambda ps: obt.Rprop(ps, capturable=True), ValueError, "capturable"),
        (lambda ps: obt.Rprop(ps, lr=torch.ones(2)), ValueError, "lr"),
        (lambda ps: obt.Adagrad(ps, fused=False), ValueError, "fused"),
        (lambda ps: obt.Adagrad(ps, foreach=True), ValueError, "foreach"),
        (lambda ps: obt.Adagrad(ps, eps=-1.0), ValueError, "eps"),
        (lambda ps: obt.Adagrad(ps, maximize=1), TypeError, "maximize"),
        (lambda ps: obt.Adagrad([{"params": ps, "lr_decay": -0.1}]), ValueError, "lr_decay"),
        (lambda ps: obt.SGD(ps, lr=-0.1), ValueError, "lr"),
        (lambda ps: obt.SGD(ps, momentum=-0.9), ValueError, "momentum"),
        (lambda ps: obt.SGD(ps, nesterov=True), ValueError, "nesterov"),
        (lambda ps: obt.SGD(ps, momentum=0.9, dampening=0.1, nesterov=True), ValueError,
         "nesterov"),
        (lambda ps: obt.SGD(ps, nesterov=1), TypeError, "nesterov"),
        (lambda ps: obt.SGD(ps, differentiable=True), ValueError, "differentiable"),
        (lambda ps: obt.SGD(ps, foreach=True, fused=True), ValueError, "fused"),
        (lambda ps: obt.SGD(ps, fused="yes"), ValueError, "fused"),
        (lambda ps: obt.RMSprop(ps, alpha=-0.5), ValueError, "alpha"),
        (lambda ps: obt.RMSprop(ps, centered=1), TypeError, "centered"),
        (lambda ps: obt.RMSprop(ps, capturable=True), ValueError, "capturable"),
        (lambda ps: obt.RMSprop(ps, differentiable=True), ValueError, "differentiable"),
        (lambda ps: obt.RMSprop(ps, lr=torch.ones(3)), ValueError, "lr"),
        (lambda ps: obt.Adam(ps, betas=(1.0, 0.9)), ValueError, r"betas\[0\]"),
        (lambda ps: obt.Adam(ps, betas=(0.9, -0.1)), ValueError, r"betas\[1\]"),
        (lambda ps: obt.Adam(ps, betas=0.9), TypeError, "betas"),
        (lambda ps: obt.Adam(ps, eps=-1e-8), ValueError, "eps"),
        (lambda ps: obt.Adam(ps, amsgrad="yes"), TypeError, "amsgrad"),
        (lambda ps: obt.Adam(ps, fused=False), ValueError, "fused"),
        (lambda ps: obt.Adam(ps, foreach=True), ValueError, "foreach"),
        (lambda ps: obt.Adam(ps, capturable=True), ValueError, "capturable"),
        (lambda ps: obt.Adam(ps, differentiable=True), ValueError, "differentiable"),
        (lambda ps: obt.AdamW(ps, weight_decay=-0.01), ValueError, "weight_decay"),
        (lambda ps: obt.AdamW(ps, fused=False), ValueError, "fused"),
        (
            lambda ps: obt.AdamW([{"params": ps, "decoupled_weight_decay": False}]),
            ValueError,
            "decoupled",
        ),
        (lambda ps: obt.QuickProp(ps, max_growth=0.0), ValueError, "max_growth"),
        (lambda ps: obt.QuickProp(ps, lr=float("nan")), ValueError, "lr"),
        (lambda ps: obt.QuickProp(ps, maximize=None), TypeError, "maximize"),
        (lambda ps: obt.QuickProp(ps, differentiable=True), ValueError, "differentiable"),
    ],
)
def test_bad_options_are_refused(make, error, words):
    with pytest.raises(error, match=words):
        make([torch.zeros(3, requires_grad=True)])


def test_group_changed_later_is_refused_at_step():
    p = torch.zeros(3, requires_grad=True)
    opt = obt.Rprop([p])
    opt.param_groups[0]["differentiable"] = True
    p.grad = torch.ones(3)
    with pytest.raises(ValueError, match=r"param_groups\[0\]: differentiable"):
        opt.step()


def _sparse_grad(ps):
    emb = torch.nn.Embedding(4, 3, sparse=True)
    emb(torch.tensor([1])).sum().backward()
    return [*ps, emb.weight]


def _float8(ps):  # 16-bit parameters are stepped (tests/test_half_torch.py); 8-bit are not
    h = torch.zeros(3, dtype=torch.float8_e5m2, requires_grad=True)
    h.grad = torch.ones(3).to(torch.float8_e5m2)
    return [*ps, h]


def _non_contiguous(ps):
    # every other column: gaps in its memory (a transposed tensor, dense, is stepped)
    t = torch.zeros(4, 10)[:, ::2].requires_grad_()
    t.grad = torch.ones(4, 10)[:, ::2]
    return [*ps, t]


def _grad_dtype(ps):
    t = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    t.grad_dtype = None  # torch refuses a gradient of another dtype unless told otherwise
    t.grad = torch.ones(3, dtype=torch.float32)
    return [*ps, t]


def _meta(ps):
    t = torch.zeros(3, device="meta", requires_grad=True)
    t.grad = torch.zeros(3, device="meta")
    return [*ps, t]


@pytest.mark.parametrize(
    "cls", [obt.Rprop, obt.Adagrad, obt.SGD, obt.RMSprop, obt.Adam, obt.AdamW, obt.QuickProp]
)
@pytest.mark.parametrize(
    "extend, error, words",
    [
        (_sparse_grad, TypeError, r"params\[2\]\.grad: sparse"),
        (_float8, TypeError, r"params\[2\]: expected a float32, float64, bfloat16 or float16.*8"),
        (_non_contiguous, ValueError, r"params\[2\]: must be contiguous"),
        (_grad_dtype, TypeError, r"params\[2\]\.grad: dtype"),
        (_meta, TypeError, r"params\[2\]: tensors on 'meta'"),
    ],
)
def test_bad_tensors_are_refused_before_anything_changes(cls, extend, error, words):
    good = [torch.ones(5, requires_grad=True), torch.ones(2, 2, requires_grad=True)]
    for p in good:
        p.grad = torch.ones_like(p)
    ps = extend(good)
    opt = cls(ps)
    before = {k: copy.deepcopy(v) for k, v in opt.state_dict()["state"].items()}
    with pytest.raises(error, match=words):
        opt.step()
    assert all(torch.equal(p, torch.ones_like(p)) for p in good), \
        "a rejected step moved a parameter"
    after = opt.state_dict()["state"]
    assert after.keys() == before.keys()
    for k in before.keys() & {0, 1}:  # the state of the good parameters
        assert all(torch.equal(before[k][n], after[k][n]) for n in before[k])


def test_cuda_without_the_cuda_module_is_a_clear_error(monkeypatch):
    from optbowl import _device

    monkeypatch.setattr(_device, "_cuda", None)
    monkeypatch.setattr(_device, "CUDA_IMPORT_ERROR", None)
    with pytest.raises(RuntimeError, match=r"optbowl\._cuda.*built without"):
        obt._cuda_kernels()


def test_a_cuda_module_without_an_entry_is_a_clear_error(monkeypatch):
    """The CUDA entries of the newer optimizers may be missing from a build: say which."""
    import types

    from optbowl import _device

    module = types.SimpleNamespace(rprop=object(), adagrad=object(), sgd=object())
    def entry(*args):
        return None

    backend = types.SimpleNamespace(rprop=entry, adagrad=entry, adam=entry)
    monkeypatch.setattr(_device, "_cuda", module)
    assert obt._cuda_entry(backend, "rprop", "Rprop") is backend.rprop
    missing_adam = r"Adam on CUDA tensors needs the entry 'adam'.*optbowl\._cuda\.adam"
    with pytest.raises(RuntimeError, match=missing_adam):
        obt._cuda_entry(backend, "adam", "Adam")  # the backend has it, the built module not
    with pytest.raises(RuntimeError, match=r"SGD on CUDA tensors needs the entry 'sgd'"):
        obt._cuda_entry(backend, "sgd", "SGD")  # the module has it, the backend not


# name -> (torch keywords, optbowl keywords, tolerance: None for bit for bit)
CUDA_CASES = {
    "Rprop": ({}, {}, None),
    "Adagrad": ({}, {}, 1e-6),  # torch's fused Adagrad has a CPU kernel only
    "SGD": (dict(lr=0.01, momentum=0.9, nesterov=True),) * 2 + (1e-6,),
    "RMSprop": ({"centered": True}, {"centered": True}, 1e-5),
    "Adam": ({"lr": 0.01, "amsgrad": True, "fused": True}, {"lr": 0.01, "amsgrad": True}, 1e-6),
    "AdamW": ({"lr": 0.01, "fused": True}, {"lr": 0.01}, 1e-6),
}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", sorted(CUDA_CASES))
def test_cuda_tensors_go_to_the_cuda_module_or_fail_clearly(name):
    from optbowl import _device

    torch_kw, our_kw, tol = CUDA_CASES[name]
    gen = torch.Generator(device="cuda").manual_seed(0)
    p = torch.randn(1024, device="cuda", generator=gen).requires_grad_()
    ref = p.detach().clone().requires_grad_()
    opt = getattr(obt, name)([p], **our_kw)
    entry = opt._entry
    if _device._cuda is None or not hasattr(_device._cuda, entry):
        p.grad = torch.ones_like(p)
        before = p.detach().clone()
        with pytest.raises(RuntimeError, match=f"optbowl._cuda|'{entry}'"):
            opt.step()
        assert torch.equal(p, before), "a refused step moved the parameter"
        return
    torch_opt = getattr(torch.optim, name)([ref], **torch_kw)
    for _ in range(20):
        g = torch.randn(1024, device="cuda", generator=gen)
        p.grad, ref.grad = g, g.clone()
        opt.step()
        torch_opt.step()
    assert close(p, ref, tol)


class _FakeCuda:
    """A pretend CUDA array (``__cuda_array_interface__``) over no memory, at ``ptr``."""

    def __init__(self, n, ptr, device=0, readonly=False):
        self.__cuda_array_interface__ = {"shape": (n,), "typestr": "<f4", "data": (ptr, readonly),
                                         "version": 3, "strides": None, "stream": None}
        self._device = device

    def __dlpack_device__(self):
        return (2, self._device)


def _fake_batch(index, params, grads, states):
    batch = obt._Batch(tuple(s is not None for s in states))
    batch.params, batch.grads, batch.index = params, grads, index
    batch.states = states
    return batch


def test_device_batches_are_checked_together_before_any_call():
    # The CUDA path of a step with several calls (param groups of different state layouts
    # on a GPU, or CPU and GPU tensors in one optimizer) checks every device batch as the
    # CUDA module would, and the batches against each other, before the first call.
    base = 1 << 40
    first = _fake_batch([0], [_FakeCuda(4, base)], [_FakeCuda(4, base + 64)],
                        [[_FakeCuda(4, base + 128)], None])
    ok = _fake_batch([1], [_FakeCuda(4, base + 256)], [_FakeCuda(4, base + 320)],
                     [[_FakeCuda(4, base + 384)], [_FakeCuda(4, base + 448)]])
    obt._check_device_batches([first, ok], ("exp_avg", "max_exp_avg_sq"))
    aliased = _fake_batch([3], [_FakeCuda(4, base + 256)], [_FakeCuda(4, base + 8)],
                          [[_FakeCuda(4, base + 384)], None])
    with pytest.raises(ValueError, match=r"grads\[3\] shares memory with params\[0\]"):
        obt._check_device_batches([first, aliased], ("exp_avg", "max_exp_avg_sq"))
    shared_state = _fake_batch([2], [_FakeCuda(4, base + 512)], [_FakeCuda(4, base + 576)],
                               [[_FakeCuda(4, base + 128)], None])
    with pytest.raises(ValueError, match=r"exp_avg\[2\] shares memory with exp_avg\[0\]"):
        obt._check_device_batches([first, shared_state], ("exp_avg", "max_exp_avg_sq"))
    read_only = _fake_batch([1], [_FakeCuda(4, base + 640, readonly=True)],
                            [_FakeCuda(4, base + 704)], [[_FakeCuda(4, base + 768)], None])
    with pytest.raises(ValueError, match=r"params\[0\]: is read-only"):
        obt._check_device_batches([first, read_only], ("exp_avg", "max_exp_avg_sq"))
    # batches on different devices never share memory
    other = _fake_batch([4], [_FakeCuda(4, base, device=1)], [_FakeCuda(4, base + 64, device=1)],
                        [[_FakeCuda(4, base + 128, device=1)], None])
    obt._check_device_batches([first, other], ("exp_avg", "max_exp_avg_sq"))


def test_the_runs_of_a_step_are_checked_before_the_first_launch(monkeypatch):
    # A step of two state layouts: the second batch's refusal comes before the first
    # batch's kernel call (the launch is never reached).
    launched = []
    params = [torch.zeros(4, requires_grad=True), torch.zeros(4, requires_grad=True)]
    opt = obt.SGD([{"params": [params[0]]}, {"params": [params[1]], "momentum": 0.9}], lr=0.1)
    params[0].grad = torch.ones(4)
    params[1].grad = params[1].detach()
    monkeypatch.setattr(opt, "_launch", lambda *args: launched.append(args))
    with pytest.raises(ValueError, match=r"params\[1\]\.grad shares memory with params\[1\]|"
                                         r"params\[1\] shares memory with params\[1\]\.grad"):
        opt.step()
    assert launched == []
