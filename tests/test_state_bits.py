"""Low-precision optimizer state (state_bits=8|16) of AdaGrad and Adam/AdamW.

A plain NumPy reference of the 8-bit code and of bfloat16 rounding (below, written for
clarity), bit-exact comparisons of the compiled quantized step with "decode with the
reference, step the float32 state with the float kernel, encode with the reference", every
call path (classes, functional, torch, bowl), refusals that leave everything unchanged,
state_dict round trips and conversions, thread-count independence, and accuracy.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

import optbowl as ob
from optbowl import _core, _registry, functional

BLOCK = 256
ONE = np.uint32(0x3F800000)


# ----------------------------------------------------------------------------- reference
def ref_encode(values, signed):
    """(codes, absmax) of float32 values: blocks of 256, absmax = max |v| (NaN if any is
    NaN), x = v * (1/absmax) in float32, the grid point nearest to x in the bit pattern
    (3 mantissa bits, anchored at 1.0; ties away from zero)."""
    v = np.ascontiguousarray(values, dtype=np.float32).ravel()
    n = v.size
    blocks = -(-n // BLOCK)
    codes = np.zeros(n, np.uint8)
    absmax = np.zeros(blocks, np.float32)
    top = np.uint32(127 if signed else 255)
    for b in range(blocks):
        x = v[b * BLOCK:(b + 1) * BLOCK]
        bits = x.view(np.uint32)
        a = (bits & np.uint32(0x7FFFFFFF)).max().view(np.float32)  # NaN bits lie above all
        absmax[b] = a
        inv = np.float32(1) / a if a > 0 else np.float32(0)
        y = (x * inv).astype(np.float32).view(np.uint32)
        mag = np.minimum(y & np.uint32(0x7FFFFFFF), ONE)
        below = (ONE - mag + np.uint32(0x7FFFF)) >> np.uint32(20)
        code = np.where(below >= top, np.uint32(0), top - below)
        if signed:
            code = code | ((y >> np.uint32(24)) & np.uint32(0x80))
        codes[b * BLOCK:(b + 1) * BLOCK] = code.astype(np.uint8)
    return codes.reshape(np.shape(values)), absmax


def ref_decode(codes, absmax, signed):
    c = np.asarray(codes, np.uint32).ravel()
    top = np.uint32(127 if signed else 255)
    mag = c & np.uint32(0x7F) if signed else c
    bits = np.where(mag == 0, np.uint32(0), ONE - ((top - mag) << np.uint32(20)))
    if signed:
        bits = bits | ((c & np.uint32(0x80)) << np.uint32(24))
    unit = bits.astype(np.uint32).view(np.float32)
    scale = np.repeat(absmax, BLOCK)[: c.size]
    return (unit * scale).astype(np.float32).reshape(np.shape(codes))


def ref_bf16(values):
    """bfloat16 bits, round to nearest even; NaN stays a quiet NaN."""
    u = np.ascontiguousarray(values, np.float32).view(np.uint32)
    rounded = ((u + np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16))
    nan = (u & np.uint32(0x7FFFFFFF)) > np.uint32(0x7F800000)
    out = np.where(nan, (u >> np.uint32(16)) | np.uint32(0x40), rounded)
    return out.astype(np.uint16)


def ref_bf16_decode(h):
    return (np.asarray(h, np.uint32) << np.uint32(16)).view(np.float32)


def rng_arrays(seed, *shapes, scale=1.0):
    r = np.random.default_rng(seed)
    return [(r.standard_normal(s) * scale).astype(np.float32) for s in shapes]


SHAPES = [(3,), (256,), (257,), (40, 33), (1000,)]


# ----------------------------------------------------------------------------- the code
@pytest.mark.parametrize("signed", [False, True])
def test_the_code_agrees_bit_for_bit_with_the_reference(signed):
    r = np.random.default_rng(0)
    v = (r.standard_normal(3000) * np.exp(r.uniform(-30, 5, 3000))).astype(np.float32)
    if not signed:
        v = np.abs(v)
    v[5] = 0.0
    v[600:856] = 0.0  # an all-zero block
    codes, absmax = _core.quantize(v, 8, signed)
    rc, ra = ref_encode(v, signed)
    np.testing.assert_array_equal(codes, rc)
    np.testing.assert_array_equal(absmax.view(np.uint32), ra.view(np.uint32))
    back = _core.dequantize(codes, absmax, 8, signed)
    want = ref_decode(codes, absmax, signed)
    np.testing.assert_array_equal(back.view(np.uint32), want.view(np.uint32))
    # every block's absmax element decodes exactly; relative error <= 1/16 above 2^-12 absmax
    big = np.abs(v) > np.repeat(absmax, BLOCK)[: v.size] * 2.0**-12
    rel = np.abs(back[big] - v[big]) / np.abs(v[big])
    assert rel.max() <= 1 / 16 + 1e-6
    assert (back[600:856] == 0).all()


def test_every_code_round_trips():
    for signed in (False, True):
        codes = np.arange(256, dtype=np.uint8)
        if not signed:
            values = _core.dequantize(codes, np.ones(1, np.float32), 8, False)
            assert np.all(np.diff(values) > 0)  # monotone, 0 then 1.25*2^-32 .. 1
            assert values[0] == 0 and values[-1] == 1.0
        again, a = _core.quantize(_core.dequantize(codes, np.ones(1, np.float32), 8, signed), 8,
                                  signed)
        assert a[0] == 1.0
        np.testing.assert_array_equal(again, codes)  # -0 (signed 128) stays -0


def test_a_nan_makes_its_block_nan_and_only_its_block():
    v = np.ones(600, np.float32)
    v[300] = np.nan
    codes, absmax = _core.quantize(v, 8, False)
    back = _core.dequantize(codes, absmax, 8, False)
    assert np.isnan(back[256:512]).all()
    assert (back[:256] == 1).all() and (back[512:] == 1).all()


def test_bfloat16_rounds_to_nearest_even():
    r = np.random.default_rng(1)
    v = r.standard_normal(5000).astype(np.float32)
    v[:4] = [np.nan, np.inf, -np.inf, 0.0]
    # exact ties: the lower 16 bits 0x8000, both parities
    v[4:6] = np.array([0x3F808000, 0x3F818000], np.uint32).view(np.float32)
    h, none = _core.quantize(v, 16, False)
    assert none is None
    np.testing.assert_array_equal(h, ref_bf16(v))
    assert h[4] == 0x3F80 and h[5] == 0x3F82
    back = _core.dequantize(h, None, 16, False)
    np.testing.assert_array_equal(back[1:].view(np.uint32), ref_bf16_decode(h)[1:].view(np.uint32))
    assert np.isnan(back[0])


# ----------------------------------------------------------------------------- the step
def quantized_reference_step(kind, params, grads, state, bits, **hyper):
    """Decode with the reference, step the float32 state with the float kernel, encode
    with the reference: what the quantized kernel must produce bit for bit."""
    names = ("sum",) if kind == "adagrad" else ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")
    signed = {"sum": False, "exp_avg": True, "exp_avg_sq": False, "max_exp_avg_sq": False}
    floats = {}
    for n in names:
        if bits == 8:
            floats[n] = [ref_decode(c, a, signed[n])
                         for c, a in zip(state[n], state[n + "_absmax"])]
        else:
            floats[n] = [ref_bf16_decode(h).reshape(h.shape) for h in state[n]]
    step = hyper.pop("step")
    if kind == "adagrad":
        functional.adagrad(params, grads, floats["sum"], step=step, **hyper)
    else:
        functional.adam(params, grads, floats["exp_avg"], floats["exp_avg_sq"],
                        floats["max_exp_avg_sq"], step=step, **hyper)
    out = {}
    for n in names:
        if bits == 8:
            pairs = [ref_encode(f, signed[n]) for f in floats[n]]
            out[n] = [c for c, _ in pairs]
            out[n + "_absmax"] = [a for _, a in pairs]
        else:
            out[n] = [ref_bf16(f).reshape(f.shape) for f in floats[n]]
    return out


def fresh_state(kind, shapes, bits, seed=3):
    names = ("sum",) if kind == "adagrad" else ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")
    signed = {"sum": False, "exp_avg": True, "exp_avg_sq": False, "max_exp_avg_sq": False}
    r = np.random.default_rng(seed)
    state = {}
    for n in names:
        values = [(r.standard_normal(s) if signed[n] else r.exponential(size=s)).astype(np.float32)
                  for s in shapes]
        if bits == 8:
            pairs = [ref_encode(v, signed[n]) for v in values]
            state[n] = [c for c, _ in pairs]
            state[n + "_absmax"] = [a for _, a in pairs]
        else:
            state[n] = [ref_bf16(v).reshape(v.shape) for v in values]
    return state


@pytest.mark.parametrize("bits", [8, 16])
@pytest.mark.parametrize("hyper", [
    {"lr": 0.1}, {"lr": 0.05, "lr_decay": 0.1, "weight_decay": 0.01, "maximize": True},
])
def test_quantized_adagrad_matches_the_reference_bit_for_bit(bits, hyper, each_isa):
    params = rng_arrays(0, *SHAPES)
    grads = rng_arrays(1, *SHAPES)
    state = fresh_state("adagrad", SHAPES, bits)
    want_p = [p.copy() for p in params]
    want = quantized_reference_step("adagrad", want_p, grads, copy.deepcopy(state), bits,
                                    step=3, **hyper)
    functional.adagrad(params, grads, state["sum"], step=3, state_bits=bits,
                       sum_absmaxes=state.get("sum_absmax"), **hyper)
    for i in range(len(SHAPES)):
        np.testing.assert_array_equal(params[i].view(np.uint32), want_p[i].view(np.uint32))
        np.testing.assert_array_equal(state["sum"][i], want["sum"][i])
        if bits == 8:
            np.testing.assert_array_equal(state["sum_absmax"][i], want["sum_absmax"][i])


@pytest.mark.parametrize("bits", [8, 16])
@pytest.mark.parametrize("hyper", [
    {"lr": 0.01}, {"lr": 0.01, "weight_decay": 0.1, "amsgrad": True},
    {"lr": 0.02, "weight_decay": 0.1, "decoupled_weight_decay": True, "maximize": True},
])
def test_quantized_adam_matches_the_reference_bit_for_bit(bits, hyper, each_isa):
    # The float-state step rounds each tensor's last numel % 8 elements as torch's fused
    # scalar tail; the quantized step (which torch has not) rounds every element as the
    # body: the reference comparison takes sizes without such a tail, across block edges.
    shapes = [s for s in SHAPES if np.prod(s) % 8 == 0] + [(8,), (264,)]
    params = rng_arrays(0, *shapes)
    grads = rng_arrays(1, *shapes)
    state = fresh_state("adam", shapes, bits)
    want_p = [p.copy() for p in params]
    want = quantized_reference_step("adam", want_p, grads, copy.deepcopy(state), bits, step=4,
                                    **hyper)
    kw = {}
    if bits == 8:
        kw = {f"{n}_absmaxes": state[f"{n}_absmax"]
              for n in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")}
    functional.adam(params, grads, state["exp_avg"], state["exp_avg_sq"], state["max_exp_avg_sq"],
                    step=4, state_bits=bits, **kw, **hyper)
    names = ["exp_avg", "exp_avg_sq"] + (["max_exp_avg_sq"] if hyper.get("amsgrad") else [])
    for i in range(len(shapes)):
        np.testing.assert_array_equal(params[i].view(np.uint32), want_p[i].view(np.uint32))
        for n in names:
            np.testing.assert_array_equal(state[n][i], want[n][i], err_msg=n)
            if bits == 8:
                np.testing.assert_array_equal(state[n + "_absmax"][i], want[n + "_absmax"][i])


@pytest.mark.parametrize("kind", ["adagrad", "adam"])
def test_special_values_step_as_the_reference_on_every_isa(kind, each_isa):
    # The AVX-512 loops decode and encode with vector code of their own (quant.hpp): NaN,
    # infinite, signed-zero and out-of-range state and gradients, an all-zero block, and
    # blocks cut short, as the portable loops and the reference.
    shapes = [(1000,), (296,), (64,)]  # no tail of torch's scalar loop (numel % 8 == 0)
    params = rng_arrays(0, *shapes)
    grads = rng_arrays(1, *shapes)
    grads[0][3] = np.nan
    grads[0][700] = np.inf
    grads[0][256:512] = 0.0
    grads[0][520] = -0.0
    grads[1][17] = -np.inf
    grads[2][:] = np.float32(2.0**-30)
    state = fresh_state(kind, shapes, 8)
    names = ["sum"] if kind == "adagrad" else ["exp_avg", "exp_avg_sq"]
    for n in names:
        state[n][0][512:768] = 0  # an all-zero block (absmax kept, codes 0)
        state[n][1][:] = 255 if n != "exp_avg" else 0x80  # the top code / -0
        state[n + "_absmax"][2][0] = np.float32(3e38)
    want_p = [p.copy() for p in params]
    with np.errstate(invalid="ignore", over="ignore"):  # the reference's inf * 0, NaN
        want = quantized_reference_step(kind, want_p, grads, copy.deepcopy(state), 8, step=2,
                                        lr=0.01)
    if kind == "adagrad":
        functional.adagrad(params, grads, state["sum"], step=2, state_bits=8,
                           sum_absmaxes=state["sum_absmax"], lr=0.01)
    else:
        functional.adam(params, grads, state["exp_avg"], state["exp_avg_sq"],
                        state["max_exp_avg_sq"], step=2, state_bits=8,
                        exp_avg_absmaxes=state["exp_avg_absmax"],
                        exp_avg_sq_absmaxes=state["exp_avg_sq_absmax"],
                        max_exp_avg_sq_absmaxes=state["max_exp_avg_sq_absmax"], lr=0.01)
    assert np.isnan(state[names[0] + "_absmax"][0][0])  # the NaN's block
    for i in range(len(shapes)):
        np.testing.assert_array_equal(params[i].view(np.uint32), want_p[i].view(np.uint32))
        for n in names:
            np.testing.assert_array_equal(state[n][i], want[n][i], err_msg=n)
            np.testing.assert_array_equal(state[n + "_absmax"][i].view(np.uint32),
                                          want[n + "_absmax"][i].view(np.uint32), err_msg=n)


# ----------------------------------------------------------------------------- classes
def make(cls, params, **kw):
    return cls(params, **kw)


CLASSES = [(ob.Adagrad, {"lr": 0.1}), (ob.Adam, {"lr": 0.01}), (ob.AdamW, {"lr": 0.01}),
           (ob.Adam, {"lr": 0.01, "amsgrad": True})]


@pytest.mark.parametrize("bits", [8, 16])
@pytest.mark.parametrize("cls,kw", CLASSES)
def test_a_class_steps_as_the_functional_call(cls, kw, bits):
    shapes = [(300,), (17, 5)]
    params = rng_arrays(0, *shapes)
    grads = rng_arrays(1, *shapes)
    opt = cls(params, state_bits=bits, **kw)
    for _ in range(3):
        opt.step(grads)
    # the same steps through the functional API on the class's initial state
    p2 = rng_arrays(0, *shapes)
    st = cls(p2, state_bits=bits, **kw)
    st.step([None, None])  # no step: no state yet
    sd = opt.state_dict()
    assert sd["state_bits"] == bits
    names = opt._float_state
    for i, s in sd["state"].items():
        assert s["step"] == 3
        for n in names:
            assert s[n].dtype == (np.uint8 if bits == 8 else np.uint16)
            assert s[n].shape == shapes[i]
            if bits == 8:
                assert s[n + "_absmax"].shape == (-(-s[n].size // BLOCK),)
    fresh = {n: [] for n in opt._state_names}
    for i in range(2):
        new = opt._new_state(p2[i], opt.param_groups[0])
        for n in opt._state_names:
            fresh[n].append(new[n])
    group = {k: v for k, v in opt.param_groups[0].items() if k != "params"}
    for t in (1, 2, 3):
        if cls is ob.Adagrad:
            functional.adagrad(p2, grads, fresh["sum"], step=t, state_bits=bits,
                               sum_absmaxes=fresh.get("sum_absmax"),
                               **{k: group[k] for k in ("lr", "lr_decay", "weight_decay", "eps",
                                                        "maximize")})
        else:
            kw8 = {f"{n}_absmaxes": fresh[f"{n}_absmax"] for n in names} if bits == 8 else {}
            functional.adam(p2, grads, fresh["exp_avg"], fresh["exp_avg_sq"],
                            fresh["max_exp_avg_sq"], step=t, state_bits=bits, **kw8,
                            **{k: group[k] for k in ("lr", "betas", "eps", "weight_decay",
                                                     "amsgrad", "maximize",
                                                     "decoupled_weight_decay")})
    for i in range(2):
        np.testing.assert_array_equal(params[i], p2[i])
        for n in opt._state_names:
            np.testing.assert_array_equal(sd["state"][i][n], fresh[n][i])


@pytest.mark.parametrize("bits", [8, 16])
def test_the_results_do_not_depend_on_the_thread_count(bits):
    shapes = [(300_000,), (70_001,), (1000,)]
    out = []
    for threads in (1, 2, 3):
        ob.set_num_threads(threads)
        try:
            params = rng_arrays(0, *shapes)
            grads = rng_arrays(1, *shapes)
            opt = ob.Adam(params, lr=0.01, state_bits=bits, amsgrad=True,
                          **({"stochastic_rounding": True, "seed": 7} if bits == 16 else {}))
            for _ in range(2):
                opt.step(grads)
            out.append((params, opt.state_dict()))
        finally:
            ob.set_num_threads(0)
    for params, sd in out[1:]:
        for a, b in zip(params, out[0][0]):
            np.testing.assert_array_equal(a, b)
        for i in sd["state"]:
            for k, v in sd["state"][i].items():
                np.testing.assert_array_equal(v, out[0][1]["state"][i][k])


def test_stochastic_rounding_is_seeded_and_unbiased():
    def run(seed):
        p = np.zeros(20000, np.float32)
        opt = ob.Adagrad(p, lr=0.0, state_bits=16, stochastic_rounding=True, seed=seed)
        opt.step(np.full(20000, np.float32(1.00390625 + 2**-9)))  # sum = g^2 between bf16s
        return opt.state_dict()["state"][0]["sum"]

    a, b, c = run(1), run(1), run(2)
    np.testing.assert_array_equal(a, b)
    assert (a != c).any()
    values = _core.dequantize(a, None, 16, False)
    exact = np.float32(1.00390625 + 2**-9) ** 2
    assert len(np.unique(values)) == 2  # the two neighbours
    assert abs(values.astype(np.float64).mean() - exact) < 2e-4
    nearest = ob.Adagrad(np.zeros(3, np.float32), lr=0.0, state_bits=16)
    nearest.step(np.full(3, np.float32(1.00390625 + 2**-9)))
    np.testing.assert_array_equal(nearest.state_dict()["state"][0]["sum"],
                                  ref_bf16(np.full(3, exact, np.float32)))


# ----------------------------------------------------------------------------- refusals
@pytest.mark.parametrize("bad", [4, 0, 12, 32.0, True, "8", None])
def test_state_bits_outside_8_16_32_is_refused(bad):
    for cls in (ob.Adagrad, ob.Adam, ob.AdamW):
        with pytest.raises(ValueError, match="state_bits"):
            cls(np.zeros(3, np.float32), state_bits=bad)
    p = np.zeros(3, np.float32)
    s = np.zeros(3, np.float32)
    with pytest.raises(ValueError, match="state_bits"):
        functional.adagrad([p], [p.copy()], [s], step=1, state_bits=bad)


def test_float64_parameters_and_misplaced_options_are_refused():
    with pytest.raises(TypeError, match=r"params\[0\].*float32"):
        ob.Adam(np.zeros(3), state_bits=8)
    opt = ob.Adagrad(np.zeros(3, np.float32), state_bits=8)
    with pytest.raises(TypeError, match=r"params\[1\].*float32"):
        opt.add_param_group({"params": [np.zeros(3)]})
    with pytest.raises(ValueError, match="stochastic_rounding"):
        ob.Adam(np.zeros(3, np.float32), state_bits=8, stochastic_rounding=True)
    with pytest.raises(ValueError, match="seed"):
        ob.Adam(np.zeros(3, np.float32), state_bits=16, seed=3)


@pytest.mark.parametrize("bits", [8, 16])
def test_wrong_state_arrays_are_refused_with_nothing_written(bits):
    shapes = [(300,), (20,)]
    params = rng_arrays(0, *shapes)
    grads = rng_arrays(1, *shapes)
    state = fresh_state("adam", shapes, bits)
    before = copy.deepcopy((params, state))

    def call(**change):
        s = {**state, **change}
        kw = {f"{n}_absmaxes": s[f"{n}_absmax"] for n in ("exp_avg", "exp_avg_sq",
                                                          "max_exp_avg_sq")} if bits == 8 else {}
        functional.adam(params, grads, s["exp_avg"], s["exp_avg_sq"], s["max_exp_avg_sq"],
                        step=1, state_bits=bits, amsgrad=True, **kw)

    wrong_dtype = [state["exp_avg_sq"][0], state["exp_avg_sq"][1].astype(np.float32)]
    with pytest.raises(TypeError, match=r"exp_avg_sqs\[1\]"):
        call(exp_avg_sq=wrong_dtype)
    wrong_shape = [state["exp_avg"][0][:-1].copy(), state["exp_avg"][1]]
    with pytest.raises(ValueError, match=r"exp_avgs\[0\]: shape"):
        call(exp_avg=wrong_shape)
    ro = [a.copy() for a in state["max_exp_avg_sq"]]
    ro[1].flags.writeable = False
    with pytest.raises(ValueError, match=r"max_exp_avg_sqs\[1\]: is read-only"):
        call(max_exp_avg_sq=ro)
    shared = [state["exp_avg"][0], state["exp_avg_sq"][1]]  # exp_avgs[0]'s memory
    with pytest.raises(ValueError, match="shares memory"):
        call(exp_avg_sq=shared)
    if bits == 8:
        with pytest.raises(ValueError, match=r"exp_avg_absmaxes\[0\]: expected shape \(2,\)"):
            call(exp_avg_absmax=[np.zeros(1, np.float32), state["exp_avg_absmax"][1]])
        with pytest.raises(TypeError, match=r"exp_avg_sq_absmaxes\[1\]: expected a float32"):
            call(exp_avg_sq_absmax=[state["exp_avg_sq_absmax"][0], np.zeros(1)])
    with pytest.raises(TypeError, match=r"params\[0\].*float32"):
        functional.adagrad([np.zeros(3)], [np.zeros(3)], [np.zeros(3, np.uint16)], step=1,
                           state_bits=16)
    for a, b in zip(params, before[0]):
        np.testing.assert_array_equal(a, b)
    for n in state:
        for a, b in zip(state[n], before[1][n]):
            np.testing.assert_array_equal(a, b)


# ----------------------------------------------------------------------------- state_dict
@pytest.mark.parametrize("bits", [8, 16])
@pytest.mark.parametrize("cls", [getattr(ob, c) for r in _registry.rules() if r.low_precision
                                 for c in r.classes])
def test_state_dict_round_trip_continues_bit_for_bit(cls, bits):
    shapes = [(700,), (9, 3)]
    params = rng_arrays(0, *shapes)
    grads = rng_arrays(1, *shapes)
    opt = cls(params, state_bits=bits)
    opt.step(grads)
    sd = opt.state_dict()
    np.savez(__import__("io").BytesIO(), **{f"{i}_{k}": v for i, s in sd["state"].items()
                                            for k, v in s.items()})
    twin_params = [p.copy() for p in params]
    twin = cls(twin_params, state_bits=bits)
    twin.load_state_dict(sd)
    opt.step(grads)
    twin.step(grads)
    for a, b in zip(params, twin_params):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("cls", [ob.Adagrad, ob.Adam])
def test_state_dicts_convert_between_formats(cls):
    shapes = [(700,), (9, 3)]
    params = rng_arrays(0, *shapes)
    grads = rng_arrays(1, *shapes)
    opt = cls(params, state_bits=8)
    opt.step(grads)
    sd8 = opt.state_dict()
    names = opt._float_state
    signed = opt._signed_state
    # 8-bit -> float: dequantized exactly as the code says
    flt = cls([p.copy() for p in params])
    flt.load_state_dict(sd8)
    sd32 = flt.state_dict()
    assert "state_bits" not in sd32
    for i in range(2):
        for n, sg in zip(names, signed):
            want = ref_decode(sd8["state"][i][n], sd8["state"][i][n + "_absmax"], sg)
            np.testing.assert_array_equal(sd32["state"][i][n], want)
    # float -> 8-bit: quantized back to the same codes; float -> 16-bit: bfloat16 of it
    back = cls([p.copy() for p in params], state_bits=8)
    back.load_state_dict(sd32)
    for i in range(2):
        for n in names:
            np.testing.assert_array_equal(back.state_dict()["state"][i][n], sd8["state"][i][n])
    half = cls([p.copy() for p in params], state_bits=16)
    half.load_state_dict(sd32)
    for i in range(2):
        for n in names:
            np.testing.assert_array_equal(half.state_dict()["state"][i][n],
                                          ref_bf16(sd32["state"][i][n]))


def test_a_bad_saved_state_is_refused_with_the_optimizer_unchanged():
    params = rng_arrays(0, (300,))
    opt = ob.Adam(params, state_bits=8)
    opt.step(rng_arrays(1, (300,)))
    sd = opt.state_dict()
    keep = copy.deepcopy(opt.state_dict())
    bad = copy.deepcopy(sd)
    bad["state"][0]["exp_avg_absmax"] = np.zeros(5, np.float32)
    with pytest.raises(ValueError, match="exp_avg_absmax"):
        ob.Adam([p.copy() for p in params]).load_state_dict(bad)
    bad = copy.deepcopy(sd)
    bad["state"][0]["exp_avg"] = bad["state"][0]["exp_avg"].astype(np.int16)
    with pytest.raises(TypeError, match="exp_avg"):
        opt.load_state_dict(bad)
    bad = copy.deepcopy(sd)
    bad["state_bits"] = 4
    with pytest.raises(ValueError, match="state_bits"):
        opt.load_state_dict(bad)
    f64 = ob.Adam([np.zeros(300)])
    f64.step([np.ones(300)])
    with pytest.raises(TypeError, match="float32"):
        opt.load_state_dict(f64.state_dict())
    after = opt.state_dict()
    for k, v in keep["state"][0].items():
        np.testing.assert_array_equal(after["state"][0][k], v)


def test_repr_names_the_state_format():
    assert "state_bits=8" in repr(ob.Adagrad(np.zeros(3, np.float32), state_bits=8))
    r = repr(ob.AdamW(np.zeros(3, np.float32), state_bits=16, stochastic_rounding=True, seed=4))
    assert "stochastic_rounding=True, seed=4" in r
    assert "state_bits" not in repr(ob.Adam(np.zeros(3)))


# ----------------------------------------------------------------------------- accuracy
def least_squares(bits, method, rows=500, cols=64, steps=300):
    """Least squares ||Xw - y||² / (2 rows) trained from w = 0: the loss reduction."""
    r = np.random.default_rng(0)
    X = r.standard_normal((rows, cols)).astype(np.float32)
    y = (X @ r.standard_normal(cols) + 0.1 * r.standard_normal(rows)).astype(np.float32)
    w = np.zeros(cols, np.float32)
    opt = (ob.Adagrad(w, lr=0.1, state_bits=bits) if method == "adagrad"
           else ob.Adam(w, lr=0.01, state_bits=bits))

    def loss():
        e = X @ w - y
        return float(e @ e) / (2 * rows)

    start = loss()
    for _ in range(steps):
        opt.step((X.T @ (X @ w - y) / rows).astype(np.float32))
    return start - loss()


@pytest.mark.parametrize("method", ["adagrad", "adam"])
def test_least_squares_loss_reduction_is_within_5_percent_of_float_state(method):
    # 500 x 64, 300 steps: the 2000 x 256 problem scaled down, same shape ratio
    ref = least_squares(32, method)
    for bits in (16, 8):
        got = least_squares(bits, method)
        assert abs(got - ref) <= 0.05 * ref, (bits, got, ref)


@pytest.mark.parametrize("method", ["adagrad", "adam"])
@pytest.mark.parametrize("bits", [8, 16])
def test_the_bowl_runs_the_quantized_loop(method, bits):
    bowl = ob.QuadraticBowl.from_eigenvalues(np.linspace(1, 10, 300), rotate=True, seed=0)
    x0 = np.ones(300)
    hyper = {"lr": 0.1} if method == "adagrad" else {"lr": 0.05}
    traj = bowl.run(method, x0, 40, dtype=np.float32, state_bits=bits, **hyper)
    # the same steps by the optimizer class on the same gradients
    x = x0.astype(np.float32)
    cls = ob.Adagrad if method == "adagrad" else ob.Adam
    opt = cls(x, state_bits=bits, **hyper)
    A = bowl.hessian
    b = bowl._b
    for k in range(40):
        np.testing.assert_array_equal(traj.x[k], x)
        g = (A @ x.astype(np.float64) - b).astype(np.float32)
        opt.step(g)
    float_run = bowl.run(method, x0, 40, dtype=np.float32, **hyper)
    assert abs(traj.f[-1] - float_run.f[-1]) <= 0.05 * abs(float_run.f[0] - float_run.f[-1])
    with pytest.raises(ValueError, match="state_bits"):
        bowl.run("gd", x0, 3, state_bits=8, lr=0.1)


# ----------------------------------------------------------------------------- torch
@pytest.mark.parametrize("bits", [8, 16])
@pytest.mark.parametrize("name,kw", [("Adagrad", {"lr": 0.1}), ("Adam", {"lr": 0.01}),
                                     ("AdamW", {"lr": 0.01}),
                                     ("Adam", {"lr": 0.01, "amsgrad": True})])
def test_torch_optimizers_step_as_the_numpy_classes(name, kw, bits):
    torch = pytest.importorskip("torch")
    import optbowl.torch as obt

    shapes = [(300,), (17, 5)]
    params = rng_arrays(0, *shapes)
    grads = rng_arrays(1, *shapes)
    tensors = [torch.from_numpy(p.copy()).requires_grad_() for p in params]
    topt = getattr(obt, name)(tensors, state_bits=bits, **kw)
    nopt = getattr(ob, name)(params, state_bits=bits, **kw)
    for _ in range(3):
        for t, g in zip(tensors, grads):
            t.grad = torch.from_numpy(g)
        topt.step()
        nopt.step(grads)
    sd = nopt.state_dict()
    for i, t in enumerate(tensors):
        np.testing.assert_array_equal(t.detach().numpy(), params[i])
        st = topt.state[t]
        assert float(st["step"]) == 3
        for k in nopt._state_names:
            if k.startswith("max_exp_avg_sq") and not kw.get("amsgrad"):
                assert k not in st  # as torch, only with amsgrad
                continue
            np.testing.assert_array_equal(st[k].numpy(), sd["state"][i][k])
    # a torch state_dict round trip continues bit for bit
    twin_t = [torch.from_numpy(p.copy()).requires_grad_() for p in params]
    twin = getattr(obt, name)(twin_t, state_bits=bits, **kw)
    twin.load_state_dict(copy.deepcopy(topt.state_dict()))  # as from a file
    for opt_, ts in ((topt, tensors), (twin, twin_t)):
        for t, g in zip(ts, grads):
            t.grad = torch.from_numpy(g)
        opt_.step()
    for a, b in zip(tensors, twin_t):
        assert torch.equal(a, b)
    # another format is refused with the optimizer unchanged
    other = getattr(obt, name)([torch.from_numpy(p.copy()).requires_grad_() for p in params],
                               **kw)
    for t, g in zip(other.param_groups[0]["params"], grads):
        t.grad = torch.from_numpy(g)
    other.step()
    with pytest.raises(ValueError, match="state_bits"):
        twin.load_state_dict(other.state_dict())
    with pytest.raises(ValueError, match="state_bits"):
        other.load_state_dict(topt.state_dict())


def test_torch_refuses_what_the_quantized_state_cannot_hold():
    torch = pytest.importorskip("torch")
    import optbowl.torch as obt

    with pytest.raises(TypeError, match="float32"):
        obt.Adagrad([torch.zeros(3, dtype=torch.float64, requires_grad=True)], state_bits=8)
    t = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    opt = obt.Adam([t], state_bits=16)
    t.grad = torch.ones(3, dtype=torch.float64)
    with pytest.raises(TypeError, match="float32"):
        opt.step()
    assert (t == 0).all() and not opt.state
    for bad in (4, "8", True):
        with pytest.raises(ValueError, match="state_bits"):
            obt.Adam([torch.zeros(3, requires_grad=True)], state_bits=bad)
    # the default keeps torch's own state (bit-identity is tested elsewhere)
    p = torch.zeros(3, requires_grad=True)
    d = obt.Adam([p])
    p.grad = torch.ones(3)
    d.step()
    assert d.state[p]["exp_avg"].dtype == torch.float32


# ----------------------------------------------------------------------------- the example
def test_the_gallery_example_trains_alike_with_every_state_format(tmp_path):
    pytest.importorskip("matplotlib")
    pytest.importorskip("sklearn")
    import os
    import subprocess
    import sys

    script = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          "examples", "plot_state_bits.py")
    if not os.path.exists(script):
        pytest.skip("examples/ is not beside tests/ (e.g. an installed wheel)")
    out = subprocess.run([sys.executable, script, "--quick", "--out", str(tmp_path)],
                         capture_output=True, text=True, check=True).stdout
    assert (tmp_path / "state_bits.png").stat().st_size > 10_000
    rows = [line.split() for line in out.splitlines() if line[:1].isalpha() and "bit" not in line
            and line.split()[-1].replace(".", "").isdigit()]
    ratios = [float(r[-1]) for r in rows]
    assert len(ratios) == 9  # three problems, three formats
    assert all(abs(x - 1.0) <= 0.05 for x in ratios), out


@pytest.mark.parametrize("bits", [8, 16])
def test_a_checkpoint_file_keeps_the_state_format(bits):
    import io

    params = rng_arrays(0, (700,), (3, 4))
    grads = rng_arrays(1, (700,), (3, 4))
    opt = ob.Adam(params, state_bits=bits, amsgrad=True)
    opt.step(grads)
    f = io.BytesIO()
    ob.save_state(f, opt.state_dict())
    f.seek(0)
    twin_params = [p.copy() for p in params]
    twin = ob.Adam(twin_params, state_bits=bits, amsgrad=True)
    twin.load_state_dict(ob.load_state(f))
    for o in (opt, twin):
        o.step(grads)
    for a, b in zip(params, twin_params):
        np.testing.assert_array_equal(a, b)
