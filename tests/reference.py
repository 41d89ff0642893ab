"""Plain NumPy references of every update rule, written for clarity, not speed.

Each function updates one array in place from one gradient and a dict of state arrays,
one element at a time in the array's dtype, exactly as the rule is documented.
"""

from __future__ import annotations

import numpy as np


def _sign(x):
    return np.sign(np.nan_to_num(x, nan=0.0)).astype(x.dtype)


def rprop_init(p, lr, variant):
    state = {"step_size": np.full_like(p, lr)}
    if variant == "backtrack":
        state["direction"] = np.zeros_like(p)
    else:
        state["prev"] = np.zeros_like(p)
    if variant in ("rprop+", "irprop+"):
        state["update"] = np.zeros_like(p)
    return state


def rprop_step(p, grad, state, *, variant="irprop-", etas=(0.5, 1.2), step_sizes=(1e-6, 50.0),
               maximize=False, loss_increased=True):
    """One Rprop step of any variant, element by element."""
    t = p.dtype.type
    eta_minus, eta_plus = t(etas[0]), t(etas[1])
    step_min, step_max = t(step_sizes[0]), t(step_sizes[1])
    P, G, S = p.reshape(-1), grad.reshape(-1), state["step_size"].reshape(-1)
    with np.errstate(all="ignore"):
        if variant == "backtrack":
            D = state["direction"].reshape(-1)
            for i in range(P.size):
                g = -G[i] if maximize else G[i]
                sg = t(0) if np.isnan(g) or g == 0 else t(np.sign(g))
                if sg == 0:
                    continue
                if D[i] == 0:
                    D[i] = sg
                    S[i] = min(max(S[i], step_min), step_max)
                    P[i] = P[i] - sg * S[i]
                elif sg == D[i]:
                    S[i] = min(S[i] * eta_plus, step_max)
                    P[i] = P[i] - D[i] * S[i]
                else:
                    P[i] = P[i] + D[i] * S[i]
                    S[i] = max(S[i] * eta_minus, step_min)
                    P[i] = P[i] - D[i] * S[i]
            return
        R = state["prev"].reshape(-1)
        U = state["update"].reshape(-1) if "update" in state else None
        for i in range(P.size):
            g = -G[i] if maximize else G[i]
            s = t(g * R[i])
            f = eta_plus if s > 0 else (eta_minus if s < 0 else t(1))
            S[i] = min(max(S[i] * f, step_min), step_max)
            sign_change = f == eta_minus
            if variant == "irprop-":
                if sign_change:
                    g = t(0)
                sg = t(0) if np.isnan(g) or g == 0 else t(np.sign(g))
                P[i] = P[i] - sg * S[i]
                R[i] = g
            elif variant == "rprop-":
                sg = t(0) if np.isnan(g) or g == 0 else t(np.sign(g))
                P[i] = P[i] - sg * S[i]
                R[i] = g
            else:  # rprop+ / irprop+
                revert = variant == "rprop+" or loss_increased
                if sign_change:
                    undo = -U[i] if revert else t(0)
                    P[i] = P[i] + undo
                    U[i] = undo
                    R[i] = t(0)
                else:
                    sg = t(0) if np.isnan(g) or g == 0 else t(np.sign(g))
                    P[i] = P[i] - sg * S[i]
                    U[i] = -sg * S[i]
                    R[i] = g


def adagrad_init(p, initial_accumulator_value=0.0):
    return {"sum": np.full_like(p, initial_accumulator_value), "step": 0}


def adagrad_step(p, grad, state, *, lr=1e-2, lr_decay=0.0, weight_decay=0.0, eps=1e-10,
                 maximize=False):
    """One AdaGrad step: clr = lr / (1 + (t-1) lr_decay); s += g^2; p -= clr g / (sqrt(s) + eps).

    Plain NumPy arithmetic in the array's dtype (no fused multiply-add), so it agrees with
    the compiled kernel to a few ulp, not bit for bit.
    """
    t = p.dtype.type
    state["step"] += 1
    clr = lr / (1 + (state["step"] - 1) * lr_decay)
    g = -grad if maximize else grad.copy()
    if weight_decay:
        g = g + p * t(weight_decay)
    state["sum"] += g * g
    p -= t(clr) * g / (np.sqrt(state["sum"]) + t(eps))


def sgd_step(p, grad, state, *, lr, momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0,
             maximize=False):
    """One SGD step as torch documents it; state["momentum_buffer"] is None before the first."""
    t = p.dtype.type
    g = -grad if maximize else grad.copy()
    if weight_decay:
        g = g + t(weight_decay) * p
    if momentum:
        buf = state.get("momentum_buffer")
        if buf is None:
            buf = g.copy()
        else:
            buf = t(momentum) * buf + t(1 - dampening) * g
        state["momentum_buffer"] = buf
        g = g + t(momentum) * buf if nesterov else buf
    p -= t(lr) * g


def quickprop_step(p, grad, state, *, lr=1e-2, max_growth=1.75, maximize=False):
    """One QuickProp step, element by element, as documented in optbowl.QuickProp."""
    t = p.dtype.type
    P, G = p.reshape(-1), grad.reshape(-1)
    GP, DP = state["prev_grad"].reshape(-1), state["prev_step"].reshape(-1)
    mu = t(max_growth)
    with np.errstate(all="ignore"):
        for i in range(P.size):
            g = -G[i] if maximize else G[i]
            if DP[i] == 0:
                d = t(-lr) * g
            elif g == 0:
                d = t(0)
            elif np.sign(g) == np.sign(GP[i]) and abs(g) >= abs(GP[i]):
                d = mu * DP[i]
            else:
                d = min(max(g / (GP[i] - g), -mu), mu) * DP[i]
            P[i] = P[i] + d
            GP[i] = g
            DP[i] = d


def rmsprop_step(p, grad, state, *, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0,
                 centered=False, maximize=False):
    """One RMSprop step as torch documents it (state arrays start at zero)."""
    t = p.dtype.type
    g = -grad if maximize else grad.copy()
    if weight_decay:
        g = g + t(weight_decay) * p
    v = state["square_avg"]
    v[...] = t(alpha) * v + t(1 - alpha) * g * g
    if centered:
        m = state["grad_avg"]
        m[...] = t(alpha) * m + t(1 - alpha) * g
        avg = np.sqrt(v - m * m) + t(eps)
    else:
        avg = np.sqrt(v) + t(eps)
    if momentum > 0:
        b = state["momentum_buffer"]
        b[...] = t(momentum) * b + g / avg
        p -= t(lr) * b
    else:
        p -= t(lr) * g / avg


def adam_step(p, grad, state, *, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
              amsgrad=False, maximize=False, decoupled_weight_decay=False):
    """One Adam / AdamW step as torch documents it; state["step"] counts the steps taken."""
    t = p.dtype.type
    beta1, beta2 = betas
    state["step"] += 1
    k = state["step"]
    g = -grad if maximize else grad.copy()
    if weight_decay and decoupled_weight_decay:
        p *= t(1 - lr * weight_decay)
    elif weight_decay:
        g = g + t(weight_decay) * p
    m, v = state["exp_avg"], state["exp_avg_sq"]
    m[...] = t(beta1) * m + t(1 - beta1) * g
    v[...] = t(beta2) * v + t(1 - beta2) * g * g
    if amsgrad:
        np.maximum(state["max_exp_avg_sq"], v, out=state["max_exp_avg_sq"])
        v = state["max_exp_avg_sq"]
    denom = np.sqrt(v) / t(np.sqrt(1 - beta2**k)) + t(eps)
    p -= t(lr / (1 - beta1**k)) * m / denom


def sparse_adagrad_step(p, indices, values, state, *, lr=1e-2, lr_decay=0.0, eps=1e-10,
                        maximize=False):
    """AdaGrad on the rows ``indices`` of a 2-D p (duplicates summed first), torch's sparse rule."""
    state["step"] += 1
    clr = lr / (1 + (state["step"] - 1) * lr_decay)
    rows = np.unique(indices)
    g = np.zeros((rows.size, p.shape[1]), p.dtype)
    for k, r in enumerate(indices):
        g[np.searchsorted(rows, r)] += values[k]
    if maximize:
        g = -g
    state["sum"][rows] += g * g
    p[rows] -= p.dtype.type(clr) * g / (np.sqrt(state["sum"][rows]) + p.dtype.type(eps))


# The rules below follow torch.optim's single-tensor implementations operation by operation
# (and Lion its reference implementation), so that they agree with the compiled rules bit for
# bit in float32 and float64: where torch's kernels fuse a multiply-add, so does _fma.


def _two_sum(x, y):
    s = x + y
    v = s - x
    return s, (x - (s - v)) + (y - v)


def _add_rounded_to_odd(x, y):
    """x + y rounded to odd: an inexact sum moved to its neighbour with an odd last bit."""
    s, err = _two_sum(x, y)
    bits = s.view(np.int64 if s.dtype == np.float64 else np.int32)
    fix = np.isfinite(s) & (err != 0) & ((bits & 1) == 0)
    return np.where(fix, np.nextafter(s, np.where(err > 0, np.inf, -np.inf)), s)


def _fma(a, b, c):
    """a * b + c rounded once, element-wise, in the dtype of the arrays (float32 or float64)."""
    a, b, c = np.broadcast_arrays(*(np.asarray(x) for x in (a, b, c)))
    if np.result_type(a, b, c) == np.float32:
        # The product is exact in float64; the sum rounded to odd there, then rounded to
        # float32, is the correctly rounded float32 sum.
        s = _add_rounded_to_odd(a.astype(np.float64) * b.astype(np.float64), c.astype(np.float64))
        with np.errstate(over="ignore"):
            return s.astype(np.float32)
    # float64: the exact product as a sum of two doubles (Veltkamp and Dekker), added to c as
    # Boldo and Melquiond's emulation of the fused multiply-add does (rounding to odd). Exact
    # for finite values whose product and sum neither overflow nor fall below 2^-960.
    a, b, c = (x.astype(np.float64) for x in (a, b, c))
    with np.errstate(over="ignore", invalid="ignore"):
        product = a * b

        def split(x):
            t = 134217729.0 * x
            hi = t - (t - x)
            return hi, x - hi

        (ah, al), (bh, bl) = split(a), split(b)
        product_low = ((ah * bh - product) + ah * bl + al * bh) + al * bl
        high, low = _two_sum(c, product)
        r = high + _add_rounded_to_odd(low, product_low)
        plain = product + c
    # A zero takes the plain sum's sign (-0 only from -0 + -0, as the fused sum).
    ok = np.isfinite(r) & np.isfinite(plain) & (np.abs(a) < 2.0**995) & (np.abs(b) < 2.0**995)
    return np.where(ok & (r != 0), r, plain)


def _lerp(start, end, weight):
    """torch's lerp: start + weight * (end - start), or end - (1 - weight) * (end - start) for
    |weight| >= 0.5, each one fused multiply-add."""
    diff = end - start
    if abs(weight) < 0.5:
        return _fma(weight, diff, start)
    return _fma(weight - weight.dtype.type(1), diff, end)


def _sign_keeping_nan(x):
    return np.where(x == 0, x.dtype.type(0), np.sign(x)).astype(x.dtype)


def lion_step(p, grad, state, *, lr=1e-4, betas=(0.9, 0.99), weight_decay=0.0, maximize=False):
    """One Lion step (Chen et al., 2023): c = lerp(m, g, 1 - beta1),
    p <- p * (1 - lr * weight_decay) - lr * sign(c), m <- lerp(m, g, 1 - beta2)."""
    t = p.dtype.type
    g = -grad if maximize else grad
    m = state["exp_avg"]
    if weight_decay:
        p *= t(1 - lr * weight_decay)
    c = _lerp(m, g, t(1 - betas[0]))
    p[...] = p + _sign_keeping_nan(c) * t(-lr)
    m[...] = _lerp(m, g, t(1 - betas[1]))


def adadelta_step(p, grad, state, *, lr=1.0, rho=0.9, eps=1e-6, weight_decay=0.0, maximize=False):
    """One Adadelta step as torch's single-tensor Adadelta takes it (state arrays start at zero)."""
    t = p.dtype.type
    g = -grad if maximize else grad
    if weight_decay:
        g = _fma(p, t(weight_decay), g)
    v, u = state["square_avg"], state["acc_delta"]
    v[...] = _fma(t(1 - rho) * g, g, v * t(rho))
    std = np.sqrt(v + t(eps))
    delta = (np.sqrt(u + t(eps)) / std) * g
    u[...] = _fma(t(1 - rho) * delta, delta, u * t(rho))
    p[...] = _fma(delta, t(-lr), p)


def adamax_step(p, grad, state, *, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                maximize=False):
    """One Adamax step as torch's single-tensor Adamax takes it; state["step"] counts the steps."""
    t = p.dtype.type
    beta1, beta2 = betas
    state["step"] += 1
    g = -grad if maximize else grad
    if weight_decay:
        g = _fma(p, t(weight_decay), g)
    m, u = state["exp_avg"], state["exp_inf"]
    m[...] = _lerp(m, g, t(1 - beta1))
    u[...] = np.maximum(u * t(beta2), np.abs(g) + t(eps))
    clr = lr / (1 - beta1 ** float(state["step"]))
    p[...] = p + (t(-clr) * m) / u


def nadam_init(p):
    """NAdam's state before the first step; mu_product is float32, as torch keeps it."""
    return {"step": 0, "mu_product": np.float32(1.0), "exp_avg": np.zeros_like(p),
            "exp_avg_sq": np.zeros_like(p)}


def nadam_step(p, grad, state, *, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
               momentum_decay=4e-3, decoupled_weight_decay=False, maximize=False):
    """One NAdam step as torch's single-tensor NAdam takes it (state from nadam_init)."""
    t = p.dtype.type
    beta1, beta2 = betas
    state["step"] += 1
    k = float(state["step"])
    g = -grad if maximize else grad
    if weight_decay and decoupled_weight_decay:
        p *= t(1 - lr * weight_decay)
    elif weight_decay:
        g = _fma(p, t(weight_decay), g)
    mu = beta1 * (1.0 - 0.5 * 0.96 ** (k * momentum_decay))
    mu_next = beta1 * (1.0 - 0.5 * 0.96 ** ((k + 1) * momentum_decay))
    state["mu_product"] = np.float32(state["mu_product"] * np.float32(mu))
    mu_product = float(state["mu_product"])
    m, v = state["exp_avg"], state["exp_avg_sq"]
    m[...] = _lerp(m, g, t(1 - beta1))
    v[...] = _fma(t(1 - beta2) * g, g, v * t(beta2))
    denom = np.sqrt(v / t(1 - beta2**k)) + t(eps)
    p[...] = p + (t(-lr * (1.0 - mu) / (1.0 - mu_product)) * g) / denom
    p[...] = p + (t(-lr * mu_next / (1.0 - mu_product * mu_next)) * m) / denom


def radam_step(p, grad, state, *, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
               decoupled_weight_decay=False, maximize=False):
    """One RAdam step as torch's single-tensor RAdam takes it; state["step"] counts the steps.
    The adaptive, rectified step is taken where rho_t > 5, else the plain momentum step."""
    t = p.dtype.type
    beta1, beta2 = betas
    state["step"] += 1
    k = float(state["step"])
    g = -grad if maximize else grad
    if weight_decay and decoupled_weight_decay:
        p *= t(1 - lr * weight_decay)
    elif weight_decay:
        g = _fma(p, t(weight_decay), g)
    m, v = state["exp_avg"], state["exp_avg_sq"]
    m[...] = _lerp(m, g, t(1 - beta1))
    v[...] = _fma(t(1 - beta2) * g, g, v * t(beta2))
    bias_correction2 = 1 - beta2**k
    step = (m / t(1 - beta1**k)) * t(lr)
    rho_inf = 2 / (1 - beta2) - 1
    rho_t = rho_inf - 2 * k * beta2**k / bias_correction2
    if rho_t > 5.0:
        r = (rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t)
        rect = r**0.5
        adaptive = (t(1) / (np.sqrt(v) + t(eps))) * t(bias_correction2**0.5)
        step = (step * adaptive) * t(rect)
    p[...] = p - step


def asgd_init(p, lr=1e-2):
    """ASGD's state before the first step; eta and mu are float32, as torch keeps them."""
    return {"step": 0, "eta": np.float32(lr), "mu": np.float32(1.0), "ax": np.zeros_like(p)}


def asgd_step(p, grad, state, *, lr=1e-2, lambd=1e-4, alpha=0.75, t0=1e6, weight_decay=0.0,
              maximize=False):
    """One ASGD step as torch's single-tensor ASGD takes it (state from asgd_init): the step
    uses eta and mu of the previous step, then sets eta = lr / (1 + lambd * lr * t)^alpha and
    mu = 1 / max(1, t - t0)."""
    t = p.dtype.type
    state["step"] += 1
    g = -grad if maximize else grad
    if weight_decay:
        g = _fma(p, t(weight_decay), g)
    eta, mu = float(state["eta"]), float(state["mu"])
    p[...] = _fma(g, t(-eta), p * t(1 - lambd * eta))
    ax = state["ax"]
    if mu != 1:
        ax[...] = ax + (p - ax) * t(mu)
    else:
        ax[...] = p
    k = float(state["step"])
    state["eta"] = np.float32(lr / (1 + lambd * lr * k) ** alpha)
    state["mu"] = np.float32(1 / max(1, k - t0))
