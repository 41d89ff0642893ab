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
