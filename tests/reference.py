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
