"""Property-based tests: every rule and variant against its NumPy reference.

Hypothesis draws hyper-parameters (per param group), shapes, dtypes (mixed within one
call), step counts, thread counts and the kind of gradients (scale down to float32's
subnormals, zeros, sign persistence, skipped parameters); NumPy draws the values from
a seed hypothesis picks. Three families of examples:

* a few arrays of small random shapes in up to three param groups;
* lists of many small tensors (the multi-tensor table with hundreds of entries);
* one long array whose length sits at a vector width (8/16), chunk
  (``optbowl._core.chunk_size``) or parallel-threshold (``optbowl._core.parallel_min``)
  boundary, compared on the elements near those boundaries plus a random sample (every
  rule is element-wise, so the reference can run on just those elements).

The CI profile (tests/conftest.py) runs >= 10^4 examples in all; a mismatch fails.
Rows without a NumPy reference are compared with torch (to a tolerance) where torch
has the rule.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import optbowl as ob
from optimizer_table import ROWS, assert_same_bits

PROPERTY_ROWS = [r for r in ROWS if r.ref_step is not None or r.torch_cls is not None]
CHUNK = int(ob._core.chunk_size)
PARALLEL_MIN = int(ob._core.parallel_min)
LONG = 200  # arrays at least this long are compared on a sample of elements
BOUNDARIES = [1, 2, 7, 8, 9, 15, 16, 17, 31, 32, 33, 64, CHUNK, 2 * CHUNK, PARALLEL_MIN,
              PARALLEL_MIN + CHUNK, 3 * CHUNK]
_EXAMPLES = settings().max_examples  # from the loaded profile (dev or ci)

dtypes = st.sampled_from([np.float32, np.float64])


def _hyper(row):
    return row.hyper() if row.hyper is not None else st.just({})


@st.composite
def _gradient_kind(draw):
    return {
        "scale": draw(st.sampled_from([1e-20, 1e-3, 1.0, 1e3])),
        "zeros": draw(st.sampled_from([0.0, 0.1, 0.5])),
        "persist": draw(st.sampled_from([0.0, 0.5, 0.9])),
        "skip": draw(st.sampled_from([0.0, 0.0, 0.2])),
    }


def _ulp_tolerance(want, dtype, steps, lr):
    eps = np.finfo(dtype).eps
    scale = float(np.max(np.abs(want), initial=0.0)) + lr
    return 16 * steps * eps * scale


def _run(row, group_hypers, group_of, params, steps, seed, kind, threads, sample=None):
    """Step optbowl and the reference side by side and compare (on `sample` indices if given)."""
    rng = np.random.default_rng(seed)
    full = [{**row.kwargs, **h} for h in group_hypers]
    groups = [{"params": [p for p, g in zip(params, group_of) if g == k], **h}
              for k, h in enumerate(group_hypers)]
    order = [i for k in range(len(group_hypers)) for i, g in enumerate(group_of) if g == k]
    params = [params[i] for i in order]
    group_of = [group_of[i] for i in order]
    def pick(a):  # the elements compared: all, or the sample of a long array
        return a.reshape(-1)[sample].copy() if sample is not None and a.size >= LONG else a.copy()

    expect = [pick(p) for p in params]
    if row.ref_step is not None:
        states = [row.ref_init(e, full[g]) for e, g in zip(expect, group_of)]
    else:
        torch = pytest.importorskip("torch")
        tensors = [torch.from_numpy(e) for e in expect]
        topt = getattr(torch.optim, row.torch_cls)(
            [{"params": [t for t, g in zip(tensors, group_of) if g == k]}
             for k in range(len(full))],
            **row.torch_kwargs(full[0]))
    opt = row.make(groups)
    prev_grads = [None] * len(params)
    prev_loss = None
    # largest |g| + weight_decay |p| seen per tensor: the scale of the rounding error of an
    # accumulated g^2 where the weight-decay term cancels the gradient (fma vs two roundings)
    magnitude = [0.0] * len(params)
    old_threads = ob.get_num_threads()
    ob.set_num_threads(threads)
    try:
        for _ in range(steps):
            grads = []
            for i, p in enumerate(params):
                g = np.asarray(rng.standard_normal(p.shape) * kind["scale"]).astype(p.dtype)
                g[rng.random(p.shape) < kind["zeros"]] = 0
                if prev_grads[i] is not None:
                    keep = rng.random(p.shape) < kind["persist"]
                    g[keep] = (np.abs(g) * np.sign(prev_grads[i]))[keep]
                grads.append(None if rng.random() < kind["skip"] else g)
                wd = float(full[group_of[i]].get("weight_decay", 0.0))
                magnitude[i] = max(magnitude[i],
                                   float(np.max(np.abs(g) + wd * np.abs(p), initial=0.0)))
            loss = float(rng.standard_normal())
            row.step(opt, grads, loss=loss)
            if all(g is None for g in grads):
                continue  # nothing stepped: the optimizer does not see the loss either
            increased = prev_loss is not None and loss > prev_loss
            prev_loss = loss
            if row.ref_step is not None:
                with np.errstate(all="ignore"):
                    for e, g, s, k in zip(expect, grads, states, group_of):
                        if g is not None:
                            row.ref_step(e, pick(g), s, full[k], increased)
            else:
                for t, g in zip(tensors, grads):
                    t.grad = None if g is None else torch.from_numpy(pick(g))
                topt.step()
            prev_grads = [g if g is not None else pg for g, pg in zip(grads, prev_grads)]
    finally:
        ob.set_num_threads(old_threads)

    for i, (p, e) in enumerate(zip(params, expect)):
        got = pick(p)
        if row.ref_step is not None and row.ref_exact:
            assert_same_bits(got, e, f"params[{i}]")
            for name in row.state_names:
                if i in opt.state:
                    assert_same_bits(pick(opt.state[i][name]), states[i][name],
                                     f"state[{i}][{name!r}]")
        else:
            lr = float(full[group_of[i]].get("lr", 0.01))
            tol = _ulp_tolerance(e, p.dtype, steps, lr)
            np.testing.assert_allclose(got, e, rtol=0, atol=tol, equal_nan=True,
                                       err_msg=f"params[{i}]")
            if row.ref_step is not None:
                for name in row.state_names:
                    if i in opt.state:
                        want = states[i][name]
                        np.testing.assert_allclose(pick(opt.state[i][name]), want, rtol=0,
                                                   atol=_ulp_tolerance(
                                                       want, p.dtype, steps,
                                                       magnitude[i] ** 2 + magnitude[i]),
                                                   err_msg=f"state[{i}][{name!r}]")


def _random_shape(rng, max_dim=9):
    if rng.random() < 0.2:  # three small dimensions
        return tuple(int(d) for d in rng.integers(0, 4, 3))
    return tuple(int(d) for d in rng.integers(0, max_dim + 1, rng.integers(0, 3)))


def _random_dtype(rng):
    return (np.float32, np.float64)[rng.integers(0, 2)]


@st.composite
def _small_case(draw, row):
    # Hypothesis draws the sizes of things; the layout itself comes from the seed
    # (cheaper to generate than one hypothesis draw per dimension).
    n = draw(st.integers(1, 6))
    n_groups = draw(st.integers(1, min(3, n)))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed ^ 0xC0FFEE)
    group_of = sorted([k for k in range(n_groups)] + list(rng.integers(0, n_groups, n - n_groups)))
    return {
        "group_hypers": [draw(_hyper(row)) for _ in range(n_groups)],
        "group_of": [int(g) for g in group_of],
        "layout": [(_random_shape(rng), _random_dtype(rng)) for _ in range(n)],
        "steps": draw(st.integers(1, 5)),
        "seed": seed,
        "kind": draw(_gradient_kind()),
        "threads": draw(st.sampled_from([0, 1, 2])),
    }


SMALL_SHAPES = [(), (0,), (1,), (3,), (8,), (9,), (16,), (17,), (2, 3)]


@st.composite
def _many_tensors_case(draw, row):
    n = draw(st.integers(10, 80))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed ^ 0xC0FFEE)
    return {
        "group_hypers": [draw(_hyper(row))],
        "group_of": [0] * n,
        "layout": [(SMALL_SHAPES[rng.integers(0, len(SMALL_SHAPES))], _random_dtype(rng))
                   for _ in range(n)],
        "steps": draw(st.integers(1, 3)),
        "seed": seed,
        "kind": draw(_gradient_kind()),
        "threads": draw(st.sampled_from([0, 1])),
    }


def _params_for(case):
    rng = np.random.default_rng(case["seed"] ^ 0x5EED)
    return [np.asarray(rng.standard_normal(s)).astype(d) for s, d in case["layout"]]


def _check(row, case, sample=None):
    _run(row, case["group_hypers"], case["group_of"], _params_for(case), case["steps"],
         case["seed"], case["kind"], case["threads"], sample)


@pytest.mark.parametrize("row", PROPERTY_ROWS, ids=str)
@given(data=st.data())
def test_small_arrays_in_groups_match_the_reference(row, data):
    _check(row, data.draw(_small_case(row), label="case"))


@pytest.mark.parametrize("row", PROPERTY_ROWS, ids=str)
@given(data=st.data())
def test_many_small_tensors_match_the_reference(row, data):
    _check(row, data.draw(_many_tensors_case(row), label="case"))


@pytest.mark.parametrize("row", PROPERTY_ROWS, ids=str)
@settings(max_examples=max(5, _EXAMPLES // 10))
@given(base=st.sampled_from(BOUNDARIES), delta=st.integers(-3, 3), dtype=dtypes, data=st.data(),
       steps=st.integers(1, 3), seed=st.integers(0, 2**32 - 1), kind=_gradient_kind(),
       threads=st.sampled_from([0, 1, 2, 3]))
def test_lengths_at_vector_chunk_and_thread_boundaries_match_the_reference(
        row, base, delta, dtype, data, steps, seed, kind, threads):
    n = max(0, base + delta)
    hyper = data.draw(_hyper(row), label="hyper")
    # a short neighbour in the same call: one table mixes a long and a short tensor
    case = {"group_hypers": [hyper], "group_of": [0, 0], "layout": [((n,), dtype), ((5,), dtype)],
            "steps": steps, "seed": seed, "kind": kind, "threads": threads}
    rng = np.random.default_rng(seed)
    near = [i + d for i in (0, 8, 16, CHUNK, 2 * CHUNK, 3 * CHUNK, PARALLEL_MIN, n)
            for d in range(-9, 9)]
    sample = np.unique([i for i in near if 0 <= i < n] + list(rng.integers(0, max(n, 1), 64)))
    _check(row, case, sample[sample < n])
