"""AdaGrad with row-sparse gradients (SparseRows): torch's sparse semantics."""

import numpy as np
import pytest
import reference as ref

import optbowl as ob


def _sparse_grad(rng, rows, cols, nnz, dtype):
    return rng.integers(0, rows, nnz), rng.standard_normal((nnz, cols)).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "hp", [dict(), dict(lr=0.3, lr_decay=0.01, eps=1e-6), dict(lr=0.1, maximize=True)]
)
def test_matches_reference(rng, dtype, hp):
    p = rng.standard_normal((40, 6)).astype(dtype)
    expect = p.copy()
    state = {"sum": np.zeros_like(p), "step": 0}
    opt = ob.Adagrad(p, **hp)
    for _ in range(30):
        idx, val = _sparse_grad(rng, 40, 6, 12, dtype)
        opt.step([ob.SparseRows(idx, val)])
        ref.sparse_adagrad_step(expect, idx, val, state, **hp)
    tol = 1e-5 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(p, expect, rtol=tol, atol=tol)
    np.testing.assert_allclose(opt.state[0]["sum"], state["sum"], rtol=tol, atol=tol)


@pytest.mark.parametrize(
    "hp",
    [
        dict(),
        dict(lr=0.3, lr_decay=0.01, initial_accumulator_value=0.2),
        dict(lr=0.05, eps=1e-3, maximize=True),
    ],
)
def test_matches_torch_sparse_adagrad(rng, hp):
    torch = pytest.importorskip("torch")
    shapes = [(50, 8), (7, 3)]
    params = [rng.standard_normal(s) for s in shapes]
    tparams = [torch.tensor(p.copy(), requires_grad=True) for p in params]
    opt, topt = ob.Adagrad(params, **hp), torch.optim.Adagrad(tparams, **hp)
    for _ in range(40):
        grads = []
        for p, t in zip(params, tparams):
            idx, val = _sparse_grad(rng, p.shape[0], p.shape[1], 2 * p.shape[0] // 3, np.float64)
            t.grad = torch.sparse_coo_tensor(
                torch.from_numpy(idx)[None],
                torch.from_numpy(val.copy()),
                p.shape,
                check_invariants=True,
            )
            grads.append(ob.SparseRows(idx, val))
        with torch.sparse.check_sparse_tensor_invariants(enable=True):
            topt.step()
        opt.step(grads)
    for i, (p, t) in enumerate(zip(params, tparams)):
        np.testing.assert_allclose(p, t.detach().numpy(), rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(opt.state[i]["sum"], topt.state[t]["sum"].numpy(), rtol=1e-12)


def test_only_the_given_rows_move_and_duplicates_add_up():
    p = np.ones((5, 2))
    opt = ob.Adagrad(p, lr=1.0)
    opt.step(
        [
            ob.SparseRows(
                np.array([3, 1, 3], np.int32), np.array([[1.0, 2.0], [3.0, 4.0], [2.0, 2.0]])
            )
        ]
    )
    np.testing.assert_array_equal(p[[0, 2, 4]], 1.0)
    np.testing.assert_array_equal(opt.state[0]["sum"][3], [9.0, 16.0])  # (1 + 2)^2, (2 + 2)^2
    np.testing.assert_allclose(p[3], [0.0, 0.0], atol=1e-9)  # 1 - g / |g|
    dense = ob.SparseRows([3, 1, 3], np.array([[1.0, 2.0], [3.0, 4.0], [2.0, 2.0]])).to_dense(5)
    np.testing.assert_array_equal(dense[3], [3.0, 4.0])


def test_dense_and_sparse_mixed_equal_all_dense(rng):
    p = [rng.standard_normal((6, 3)), rng.standard_normal(4)]
    q = [x.copy() for x in p]
    opt, twin = ob.Adagrad(p, lr=0.1), ob.Adagrad(q, lr=0.1)
    for _ in range(5):
        sp = ob.SparseRows(rng.integers(0, 6, 4), rng.standard_normal((4, 3)))
        g = rng.standard_normal(4)
        opt.step([sp, g])
        twin.step([sp.to_dense(6), g])
    # Rows untouched by sparse steps are untouched; touched rows agree with the dense run
    # (a dense zero row still adds 0 to the sum and moves by 0).
    for x, y in zip(p, q):
        np.testing.assert_allclose(x, y, rtol=1e-13)


def test_bad_sparse_gradients_are_rejected_before_anything_changes():
    p = np.ones((4, 2))
    opt = ob.Adagrad(p)
    with pytest.raises(TypeError, match="indices"):
        ob.SparseRows(np.array([0.0, 1.0]), np.ones((2, 2)))
    with pytest.raises(ValueError, match="indices"):
        ob.SparseRows(np.array([[0, 1]]), np.ones((2, 2)))
    with pytest.raises(ValueError, match="indices"):
        ob.SparseRows([-1], np.ones((1, 2)))
    with pytest.raises(ValueError, match="values"):
        ob.SparseRows([0, 1], np.ones((3, 2)))
    with pytest.raises(TypeError, match="values"):
        ob.SparseRows([0], np.ones((1, 2), np.int64))
    with pytest.raises(ValueError, match="indices"):
        opt.step([ob.SparseRows([4], np.ones((1, 2)))])  # out of range
    with pytest.raises(ValueError, match="values"):
        opt.step([ob.SparseRows([1], np.ones((1, 3)))])  # wrong number of columns
    with pytest.raises(TypeError, match="values"):
        opt.step([ob.SparseRows([1], np.ones((1, 2), np.float32))])  # dtype differs from the param
    with pytest.raises(ValueError, match="2-D"):
        ob.Adagrad(np.ones(4)).step([ob.SparseRows([1], np.ones((1, 1)))])
    with pytest.raises(ValueError, match="weight_decay"):
        ob.Adagrad(p, weight_decay=0.1).step([ob.SparseRows([1], np.ones((1, 2)))])
    np.testing.assert_array_equal(p, 1.0)
    assert opt.state == {}


def test_state_dict_round_trip_with_sparse_steps(rng):
    p = rng.standard_normal((8, 2))
    opt = ob.Adagrad(p, lr=0.2)
    opt.step([ob.SparseRows([1, 5], rng.standard_normal((2, 2)))])
    q = p.copy()
    other = ob.Adagrad(q, lr=0.2)
    other.load_state_dict(opt.state_dict())
    g = ob.SparseRows([5, 6], rng.standard_normal((2, 2)))
    opt.step([g])
    other.step([g])
    np.testing.assert_array_equal(p, q)


# One aliasing check sees every array of a call, dense and sparse (the whole matrix of
# combinations is in test_validation_matrix.py).
def test_a_dense_grad_aliasing_a_parameter_with_a_sparse_grad_is_refused():
    p, q = np.ones((4, 2)), np.full((4, 2), 2.0)
    opt = ob.Adagrad([p, q], lr=0.5)
    with pytest.raises(ValueError, match=r"grads\[0\] shares memory with params\[1\]|"
                                         r"params\[1\] shares memory with grads\[0\]"):
        opt.step([q, ob.SparseRows([1], np.ones((1, 2)))])
    np.testing.assert_array_equal(p, 1.0)
    np.testing.assert_array_equal(q, 2.0)
    assert opt.state == {}


def test_functional_parameter_in_the_dense_and_the_sparse_list_is_refused():
    from optbowl import functional as F

    p = np.ones((4, 2))
    sums = [np.zeros((4, 2)), np.zeros((4, 2))]
    with pytest.raises(ValueError, match=r"params\[1\] shares memory with params\[0\]|"
                                         r"params\[0\] shares memory with params\[1\]"):
        F.adagrad([p, p], [np.ones((4, 2)), ob.SparseRows([0], np.ones((1, 2)))], sums, step=1)
    np.testing.assert_array_equal(p, 1.0)
    assert not any(s.any() for s in sums)


def test_functional_sparse_sums_that_are_a_dense_parameter_are_refused():
    from optbowl import functional as F

    p, q, s = np.ones((4, 2)), np.full((4, 2), 2.0), np.zeros((4, 2))
    with pytest.raises(ValueError, match=r"sums\[1\].*shares memory|shares memory.*sums\[1\]"):
        F.adagrad([p, q], [np.ones((4, 2)), ob.SparseRows([0], np.ones((1, 2)))], [s, p], step=1)
    np.testing.assert_array_equal(p, 1.0)
    np.testing.assert_array_equal(q, 2.0)
    assert not s.any()


def test_sparse_values_shared_between_two_parameters_are_fine():
    # Gradients are only read: one values array may serve two parameters, as a dense
    # gradient may.
    p, q = np.ones((4, 2)), np.ones((4, 2))
    twin_p, twin_q = p.copy(), q.copy()
    values = np.arange(4.0).reshape(2, 2)
    ob.Adagrad([p, q], lr=0.5).step([ob.SparseRows([1, 2], values), ob.SparseRows([0, 1], values)])
    ob.Adagrad([twin_p, twin_q], lr=0.5).step(
        [ob.SparseRows([1, 2], values.copy()), ob.SparseRows([0, 1], values.copy())])
    np.testing.assert_array_equal(p, twin_p)
    np.testing.assert_array_equal(q, twin_q)
