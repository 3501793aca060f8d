"""NumPy float64 reference of the AP-cooperation physics of [AP-COOP] (Ajmal et al., "Multi-Agent
Deep Reinforcement Learning for Dynamic Multi-AP Cooperation in Cell-Free Massive MIMO
Networks"), written from the equations the obvious way: Python loops over APs and UEs, explicit
per-cluster stacked matrices, the primal ``|C| N``-dimensional inverse of eq. (16), a union-find
for the clusters. No JAX. Compared with ``cfmimo_jax.pilots.threshold_clusters``,
``cfmimo_jax.cooperation`` and ``cfmimo_jax.processing.cluster_rzf`` in
``tests/test_cooperation.py``.

Beyond the paper (``tests/test_coop_central.py``): the cell-free book's centralized P-RZF /
P-MMSE precoders (Demir, Björnson, Sanguinetti, "Foundations of User-Centric Cell-Free Massive
MIMO", eqs. (5.16), (5.18)), each UE's primal ``|M_k| N``-dimensional system built over its
serving APs, and the i.i.d. Rayleigh MMSE error variances (book eqs. (4.6), (4.7), (4.9)).
"""

from __future__ import annotations

import numpy as np


def threshold_clusters(gain, delta, max_aps):
    """Eq. (2): ``M_k = {m : beta_mk >= delta max_m' beta_m'k}``, the ``max_aps`` strongest
    of them (ties: lower index), at least the strongest AP."""
    M, K = gain.shape
    D = np.zeros((M, K), bool)
    for k in range(K):
        best = max(gain[:, k])
        cand = [m for m in range(M) if gain[m, k] >= delta * best]
        cand.sort(key=lambda m: (-gain[m, k], m))
        strongest = min(range(M), key=lambda m: (-gain[m, k], m))
        for m in cand[:max_aps] + [strongest]:
            D[m, k] = True
    return D


def interference_metric(H, W, rho, D, exclude_desired=False):
    """Eq. (7): ``I_mn = 1/|K_m| sum_{k in K_m} sum_{j in K_n} rho_nj |h_nk^H w_nj|^2``,
    ``n != m``; 0 on the diagonal and for an AP serving nobody."""
    M, K, _ = H.shape
    I = np.zeros((M, M))
    for m in range(M):
        Km = [k for k in range(K) if D[m, k]]
        if not Km:
            continue
        for n in range(M):
            if n == m:
                continue
            total = 0.0
            for k in Km:
                for j in range(K):
                    if not D[n, j] or (exclude_desired and j == k):
                        continue
                    total += rho[n, j] * abs(np.vdot(H[n, k], W[n, j])) ** 2
            I[m, n] = total / len(Km)
    return I


def interference_neighbours(I, max_neighbours=4, ratio=0.05, per_ap=False):
    """Eq. (11): ``N_m = {n != m : I_mn > ratio * max I}`` (global or per-AP maximum, the
    diagonal ignored), the ``max_neighbours`` largest first (ties: lower index); lists."""
    M = I.shape[0]
    off = [(m, n) for m in range(M) for n in range(M) if m != n]
    glob = max(I[m, n] for m, n in off) if off else 0.0
    out = []
    for m in range(M):
        others = [n for n in range(M) if n != m]
        top = max((I[m, n] for n in others), default=0.0) if per_ap else glob
        cand = [n for n in others if I[m, n] > ratio * max(top, 0.0)]
        cand.sort(key=lambda n: (-I[m, n], n))
        out.append(cand[:max_neighbours])
    return out


def union_find_labels(agree):
    """Connected components of the mutual links ``agree[m, n] and agree[n, m]`` (union-find,
    the root always the smaller index); label = smallest index of the component."""
    M = agree.shape[0]
    parent = list(range(M))

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for m in range(M):
        for n in range(m + 1, M):
            if agree[m, n] and agree[n, m]:
                a, b = find(m), find(n)
                if a != b:
                    parent[max(a, b)] = min(a, b)
    return np.array([find(m) for m in range(M)])


def cluster_rzf(H, cluster, D, alpha):
    """Eqs. (14)-(18): for each cluster of >= 2 APs (sorted AP list), the stacked
    ``H_C[|C|N, |K_C|]`` of eqs. (14)-(15), eq. (16) in the primal form
    ``W_C = H_C^H (H_C H_C^H + alpha I_{|C|N})^{-1}`` (``|K_C| x |C|N``), the precoder of UE
    ``k_j`` = column ``j`` of ``W_C^H``, each AP's segment normalised (eq. (17)); MRT
    (eq. (18)) for APs alone."""
    M, K, N = H.shape
    W = np.zeros((M, K, N), complex)
    for label in sorted(set(cluster.tolist())):
        aps = [m for m in range(M) if cluster[m] == label]
        if len(aps) == 1:
            m = aps[0]
            for k in range(K):
                if D[m, k] and np.linalg.norm(H[m, k]) > 0:
                    W[m, k] = H[m, k] / np.linalg.norm(H[m, k])
            continue
        users = [k for k in range(K) if any(D[m, k] for m in aps)]
        if not users:
            continue
        HC = np.column_stack([np.concatenate([H[m, k] for m in aps]) for k in users])
        WC = HC.conj().T @ np.linalg.inv(HC @ HC.conj().T + alpha * np.eye(len(aps) * N))
        P = WC.conj().T  # [|C| N, |K_C|], column j = w_{k_j}^C
        for i, m in enumerate(aps):
            for j, k in enumerate(users):
                seg = P[i * N : (i + 1) * N, j]
                if np.linalg.norm(seg) > 0:
                    W[m, k] = seg / np.linalg.norm(seg)
    return W


def downlink_sinr(H, W, rho, noise=1.0):
    """Eq. (9), loops over UEs and APs (sums over all APs; ``rho`` or ``w`` zero outside
    the serving sets)."""
    M, K, _ = H.shape
    sinr = np.zeros(K)
    for k in range(K):
        sig = abs(sum(np.sqrt(rho[m, k]) * np.vdot(H[m, k], W[m, k]) for m in range(M))) ** 2
        interf = 0.0
        for j in range(K):
            if j != k:
                a = sum(np.sqrt(rho[m, j]) * np.vdot(H[m, k], W[m, j]) for m in range(M))
                interf += abs(a) ** 2
        sinr[k] = sig / (interf + noise)
    return sinr


def error_variances(gain, pilot, p, tau_p):
    """Book eqs. (4.6), (4.7), (4.9) with ``R_mk = beta_mk I``: ``psi_mk = p tau_p
    sum_{i: t_i = t_k} beta_mi + 1``, ``B_mk = p tau_p beta_mk^2 / psi_mk``; returns
    ``C[M, K] = beta_mk - B_mk`` (the error correlation is ``C_mk I_N``)."""
    M, K = gain.shape
    C = np.zeros((M, K))
    for m in range(M):
        for k in range(K):
            psi = p * tau_p * sum(gain[m, i] for i in range(K) if pilot[i] == pilot[k]) + 1.0
            C[m, k] = gain[m, k] - p * tau_p * gain[m, k] ** 2 / psi
    return C


def central_precoders(Hhat, C, D, p, scheme):
    """Centralized P-MMSE (book eq. (5.16)) or P-RZF (eq. (5.18), ``scheme="p_rzf"``: no
    ``C`` term) for every UE ``k``, over its serving APs ``M_k`` (sorted) only::

        v_k = p (sum_{i in P_k} p hhat_i hhat_i^H + [sum_{i in P_k} p C_i] + I)^{-1} hhat_k

    with ``hhat_i`` the ``|M_k| N`` stacked estimates of UE ``i`` at the APs of ``M_k``,
    ``C_i = blkdiag_m(C[m, i] I_N)`` and ``P_k`` the UEs sharing a serving AP with ``k``
    (eq. (5.15)); then each AP's ``N``-segment normalised (the per-AP normalisation of
    [AP-COOP] eq. (17)). ``Hhat[M, K, N]``, ``C[M, K]``, ``D[M, K]``, ``p`` scalar."""
    M, K, N = Hhat.shape
    W = np.zeros((M, K, N), complex)
    for k in range(K):
        aps = [m for m in range(M) if D[m, k]]
        Pk = [i for i in range(K) if any(D[m, i] for m in aps)]
        A = np.eye(len(aps) * N, dtype=complex)
        for i in Pk:
            h = np.concatenate([Hhat[m, i] for m in aps])
            A += p * np.outer(h, h.conj())
            if scheme == "p_mmse":
                A += p * np.diag(np.repeat([C[m, i] for m in aps], N))
        hk = np.concatenate([Hhat[m, k] for m in aps])
        v = np.linalg.solve(A, p * hk)
        for j, m in enumerate(aps):
            seg = v[j * N : (j + 1) * N]
            if np.linalg.norm(seg) > 0:
                W[m, k] = seg / np.linalg.norm(seg)
    return W
