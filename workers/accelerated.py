"""Batched torch solvers for the classification protocols, so one accelerator serves every class, fold and C.

scikit-learn stays the reference (and the CPU default); these minimise the same objectives, so a result
solved here is re-solved by a bundle's reproduce.py with scikit-learn to within
`workers.bundle.TORCH_SOLVER_TOLERANCE`.

- Linear SVMs: liblinear's L2-regularised squared-hinge primal (`LinearSVC`'s default),
  0.5 ||w||^2 + C sum_i max(0, 1 - y_i w.x_i)^2, with x_i carrying a constant 1 whose weight (the bias)
  is regularised, as liblinear's intercept_scaling=1 does. Every binary problem is a column of W
  (D+1, columns), with its own C and its own row mask (the rows of a CV fold's training part; for
  VOC the class's non-difficult rows; for one-vs-one the rows of the pair's two classes), minimised
  together by a Newton-CG method (Jacobi-preconditioned CG on the generalised Hessian
  I + 2C X^T diag(active) X, then an exact line search on the piecewise-quadratic objective). The C grid
  is solved in increasing order, each C warm-started from the previous one's solution. The CV folds
  are scikit-learn's (StratifiedKFold / StratifiedGroupKFold, same seed), the scores its scorers'
  (balanced accuracy, average precision), the tie rule the reference's (best mean, then smaller C).
- Weighted k-NN: similarity GEMM and top-k on the device, chunked; every k from one search.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

BUDGET_BYTES = 512 * 2**20     # the working (rows x columns) arrays of one batch stay under this
_TINY = 1e-30


def torch_dtype(device) -> torch.dtype:
    """float32 on an accelerator (fast, and the SVM's optimum is well conditioned), float64 on the CPU."""
    return torch.float64 if torch.device(device).type == "cpu" else torch.float32


def default_tol(dtype: torch.dtype) -> float:
    """Stop when ||gradient|| <= tol * ||gradient at w = 0||, per column."""
    return 1e-6 if dtype == torch.float64 else 1e-4


# ---- the batched squared-hinge Newton-CG solver ----------------------------------------------------

class _Shared:
    """Every column reads the same rows x (n, D+1): one GEMM serves them all."""

    def __init__(self, x: torch.Tensor):
        self.x, self._x2, self._eig = x, None, None

    def fwd(self, w):            # (D+1, cols) -> (n, cols)
        return self.x @ w

    def bwd(self, u):            # (n, cols) -> (D+1, cols)
        return self.x.T @ u

    def sq_bwd(self, u):         # (x*x)^T u: the Hessian's diagonal
        if self._x2 is None:
            self._x2 = self.x * self.x
        return self._x2.T @ u

    def take(self, keep):
        return self

    def preconditioner(self, a, c2):
        """M_j^-1 for M_j = I + c2_j rho_j X^T X, rho_j = tr(X^T diag(a_j) X) / tr(X^T X): the Hessian with
        its active set spread evenly. One eigendecomposition of X^T X serves every column and C."""
        if self._eig is None:
            gram = self.x.T @ self.x
            values, vectors = torch.linalg.eigh(gram)
            self._eig = values.clamp_min(0), vectors, torch.diagonal(gram).sum(), (self.x * self.x).sum(1)
        values, vectors, trace, row_norms = self._eig
        rho = (row_norms @ a) / trace.clamp_min(_TINY)
        scale = 1 / (1 + (c2 * rho)[None, :] * values[:, None])        # (D+1, cols)
        return lambda r: vectors @ (scale * (vectors.T @ r))


class _Batched:
    """Column p reads its own rows x[p] (P, r, D+1), zero-padded (one-vs-one pairs): batched GEMMs."""

    def __init__(self, x: torch.Tensor):
        self.x, self._x2 = x, None

    def fwd(self, w):
        return torch.bmm(self.x, w.T.unsqueeze(2)).squeeze(2).T

    def bwd(self, u):
        return torch.bmm(u.T.unsqueeze(1), self.x).squeeze(1).T

    def sq_bwd(self, u):
        if self._x2 is None:
            self._x2 = self.x * self.x
        return torch.bmm(u.T.unsqueeze(1), self._x2).squeeze(1).T

    def take(self, keep):
        return _Batched(self.x[keep])

    def preconditioner(self, a, c2):
        """Jacobi: M^-1 = 1 / diag(I + c2 X^T diag(a) X)."""
        diag = 1 + c2 * self.sq_bwd(a)
        return lambda r: r / diag


def _pcg(op, a, c2, g, solve, max_cg: int, eps: float):
    """Solve (I + c2 X^T diag(a) X) s = -g per column by preconditioned CG (`solve` = M^-1); also X s."""
    s = torch.zeros_like(g)
    xs = torch.zeros_like(a)
    r = -g
    zr = solve(r)
    p = zr.clone()
    rz = (r * zr).sum(0)
    target = eps * torch.linalg.vector_norm(g, dim=0)
    live = torch.ones(g.shape[1], dtype=torch.bool, device=g.device)
    for _ in range(max_cg):
        xp = op.fwd(p)
        hp = p + c2 * op.bwd(a * xp)
        alpha = torch.where(live, rz / (p * hp).sum(0).clamp_min(_TINY), torch.zeros_like(rz))
        s += alpha * p
        xs += alpha * xp
        r -= alpha * hp
        live &= torch.linalg.vector_norm(r, dim=0) > target
        if not bool(live.any()):
            break
        zr = solve(r)
        rz_new = (r * zr).sum(0)
        p = zr + (rz_new / rz.clamp_min(_TINY)) * p
        rz = rz_new
    return s, xs


def _line_search(w, s, z, xs, y, m, c2, gs, iters: int = 30):
    """The exact minimiser t > 0 of the piecewise-quadratic f(w + t s), per column (safeguarded Newton
    on f' = w.s + t s.s + c2 sum active (z + t xs - y) xs, which is increasing and piecewise linear)."""
    ws, ss = (w * s).sum(0), (s * s).sum(0)
    t = torch.ones_like(ws)
    lo, hi = torch.zeros_like(ws), torch.full_like(ws, float("inf"))
    scale = gs.abs().clamp_min(_TINY)
    for _ in range(iters):
        zt = z + t * xs
        a = m * ((1 - y * zt) > 0)
        d1 = ws + t * ss + c2 * (a * (zt - y) * xs).sum(0)
        done = d1.abs() <= 1e-10 * scale
        if bool(done.all()):
            break
        d2 = ss + c2 * (a * xs * xs).sum(0)
        lo = torch.where(d1 < 0, t, lo)
        hi = torch.where(d1 > 0, t, hi)
        newton = t - d1 / d2.clamp_min(_TINY)
        fallback = torch.where(torch.isinf(hi), 2 * lo, 0.5 * (lo + hi))
        step = torch.where((newton > lo) & (newton < hi), newton, fallback)
        t = torch.where(done, t, step)
    return t


def squared_hinge_newton(op, y, m, c, w0=None, *, tol: float = 1e-6, max_iter: int = 100, max_cg: int = 500,
                         eps_cg: float = 0.1):
    """min over each column j of 0.5 ||w_j||^2 + c_j sum_i m_ij max(0, 1 - y_ij (X w_j)_i)^2.

    op: `_Shared` or `_Batched` rows X (with the constant-1 bias feature); y (rows, cols) of +-1, m (rows,
    cols) of 0/1, c (cols,); w0 (D+1, cols) a warm start. Converged columns leave the batch.
    """
    cols = y.shape[1]
    out = torch.zeros((op.x.shape[-1], cols), dtype=y.dtype, device=y.device) if w0 is None else w0.clone()
    c2 = 2 * c
    g0 = torch.linalg.vector_norm(c2 * op.bwd(m * y), dim=0)      # ||gradient|| at w = 0
    index = torch.arange(cols, device=y.device)
    w = out
    z = op.fwd(w)
    for _ in range(max_iter):
        margin = 1 - y * z
        a = m * (margin > 0)
        g = w - c2 * op.bwd(a * y * margin)
        converged = torch.linalg.vector_norm(g, dim=0) <= tol * g0
        if bool(converged.any()):
            out[:, index] = w
            keep = torch.nonzero(~converged).squeeze(1)
            if not len(keep):
                return out
            index, op = index[keep], op.take(keep)
            w, z, y, m, c2, g, a, g0 = (w[:, keep], z[:, keep], y[:, keep], m[:, keep], c2[keep], g[:, keep],
                                        a[:, keep], g0[keep])
        s, xs = _pcg(op, a, c2, g, op.preconditioner(a, c2), max_cg, eps_cg)
        t = _line_search(w, s, z, xs, y, m, c2, (g * s).sum(0))
        w = w + t * s
        z = z + t * xs
    out[:, index] = w
    return out


def _augment(x: np.ndarray, device, dtype) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x), device=device).to(dtype)
    return torch.cat([t, torch.ones((len(t), 1), dtype=dtype, device=device)], dim=1)


def _chunks(total: int, width: int):
    for start in range(0, total, max(1, width)):
        yield slice(start, min(start + max(1, width), total))


def fit_shared(x: torch.Tensor, y: torch.Tensor, m: torch.Tensor, c: torch.Tensor, w0=None, *,
               tol: float, max_iter: int, budget: int = BUDGET_BYTES, op: _Shared | None = None) -> torch.Tensor:
    """Columns over the same rows x (n, D+1): y (n, cols) of +-1 and m (n, cols) of 0/1 in any dtype,
    chunked so that each (n x chunk) working array (a dozen live at once) stays under budget / 16.
    `op`: a `_Shared(x)` reused across calls (its eigendecomposition with it)."""
    n, cols = y.shape
    width = max(1, budget // 16 // max(1, n * x.element_size()))
    op = _Shared(x) if op is None else op
    w = torch.empty((x.shape[1], cols), dtype=x.dtype, device=x.device)
    for part in _chunks(cols, width):
        w[:, part] = squared_hinge_newton(op, y[:, part].to(x.dtype), m[:, part].to(x.dtype), c[part],
                                          None if w0 is None else w0[:, part], tol=tol, max_iter=max_iter)
    return w


def fit_gathered(x: torch.Tensor, rows: list[np.ndarray], targets: list[np.ndarray], c: Sequence[float],
                 w0=None, *, tol: float, max_iter: int, budget: int = BUDGET_BYTES) -> torch.Tensor:
    """Columns each over its own rows of x (n, D+1): rows[p] the indices, targets[p] their +-1 labels.
    Gathered into zero-padded (P, r, D+1) batches of at most budget / 2 bytes (x and x*x)."""
    count = len(rows)
    w = torch.empty((x.shape[1], count), dtype=x.dtype, device=x.device)
    if not count:
        return w
    x_ext = torch.cat([x, x.new_zeros((1, x.shape[1]))])
    longest = max(len(r) for r in rows)
    width = max(1, budget // 2 // max(1, longest * x.shape[1] * x.element_size()))
    c_all = torch.as_tensor(np.asarray(c, dtype=np.float64), device=x.device).to(x.dtype)
    for part in _chunks(count, width):
        members = range(part.start, part.stop)
        r = max(len(rows[p]) for p in members)
        index = np.full((len(members), r), len(x), dtype=np.int64)
        y = np.zeros((r, len(members)))
        mask = np.zeros((r, len(members)))
        for k, p in enumerate(members):
            index[k, :len(rows[p])] = rows[p]
            y[:len(rows[p]), k] = targets[p]
            mask[:len(rows[p]), k] = 1
        op = _Batched(x_ext[torch.as_tensor(index, device=x.device)])
        y_t, mask_t = (torch.as_tensor(a, device=x.device).to(x.dtype) for a in (y, mask))
        w[:, part] = squared_hinge_newton(op, y_t, mask_t, c_all[part],
                                          None if w0 is None else w0[:, part], tol=tol, max_iter=max_iter)
    return w


# ---- linear SVMs with C by cross-validation ------------------------------------------------------

class SVMSolver:
    """The SVM protocol's fits on `device`; `splits` are scikit-learn's CV folds of the training rows."""

    def __init__(self, device="cpu", dtype: torch.dtype | None = None, tol: float | None = None,
                 max_iter: int = 100, budget: int = BUDGET_BYTES):
        self.device = torch.device(device)
        self.dtype = dtype or torch_dtype(self.device)
        self.tol = default_tol(self.dtype) if tol is None else tol
        self.max_iter, self.budget = max_iter, budget

    def _c(self, values) -> torch.Tensor:
        return torch.as_tensor(np.asarray(values, dtype=np.float64), device=self.device).to(self.dtype)

    def _shared(self, x, y, m, c, w0=None):
        if getattr(self, "_op", None) is None or self._op.x is not x:
            self._op = _Shared(x)
        return fit_shared(x, y, m, self._c(c), w0, tol=self.tol, max_iter=self.max_iter, budget=self.budget,
                          op=self._op)

    def _gathered(self, x, rows, targets, c, w0=None):
        return fit_gathered(x, rows, targets, c, w0, tol=self.tol, max_iter=self.max_iter, budget=self.budget)

    # one-vs-rest ---------------------------------------------------------------------------------
    def ovr(self, train_x, train_y, test_x, c_grid: Sequence[float], splits, fixed_c: float | None):
        """(chosen C, {C: mean CV balanced accuracy}, test predictions): LinearSVC's argmax rule."""
        from sklearn.metrics import balanced_accuracy_score

        present, labels = np.unique(np.asarray(train_y), return_inverse=True)
        x = _augment(train_x, self.device, self.dtype)
        onehot = torch.as_tensor(labels, device=self.device)[:, None] == torch.arange(len(present),
                                                                                      device=self.device)
        signs = onehot.to(torch.int8) * 2 - 1                        # (n, K) of +-1
        k = len(present)
        scores, start = {}, None
        if fixed_c is None and splits:
            folds = len(splits)
            mask = torch.zeros((len(x), folds * k), dtype=torch.bool, device=self.device)
            for f, (fit, _) in enumerate(splits):
                mask[torch.as_tensor(fit, device=self.device), f * k:(f + 1) * k] = True
            y = signs.repeat(1, folds)
            w = None
            solutions = {}
            for c in sorted(c_grid):
                w = self._shared(x, y, mask, [c] * (folds * k), w)
                solutions[c] = w
                fold_scores = []
                for f, (fit, held) in enumerate(splits):
                    decision = x[torch.as_tensor(held, device=self.device)] @ w[:, f * k:(f + 1) * k]
                    absent = ~onehot[torch.as_tensor(fit, device=self.device)].any(0)
                    decision[:, absent] = -torch.inf                 # LinearSVC never predicts an unseen class
                    predicted = decision.argmax(1).cpu().numpy()
                    fold_scores.append(balanced_accuracy_score(labels[held], predicted))
                scores[c] = float(np.mean(fold_scores))
            chosen = float(max(c_grid, key=lambda c: (scores[c], -c)))
            start = solutions[chosen].reshape(x.shape[1], folds, k).mean(1)   # the folds' mean: a warm start
        else:
            chosen = 1.0 if fixed_c is None else float(fixed_c)
        w = self._shared(x, signs, torch.ones_like(signs, dtype=torch.bool), [chosen] * k, start)
        decision = _augment(test_x, self.device, self.dtype) @ w
        return chosen, {str(c): scores[c] for c in c_grid if c in scores}, present[decision.argmax(1).cpu().numpy()]

    def decision_function(self, train_x, y01, test_x, c: float) -> np.ndarray:
        """One binary LinearSVC at C (y01 of 0/1, class 1 positive): its test decision values."""
        x = _augment(train_x, self.device, self.dtype)
        signs = torch.as_tensor(np.where(np.asarray(y01) == 1, 1, -1)[:, None], device=self.device)
        w = self._shared(x, signs, torch.ones_like(signs, dtype=torch.bool), [c])
        return (_augment(test_x, self.device, self.dtype) @ w)[:, 0].cpu().numpy().astype(np.float64)

    # one-vs-one ----------------------------------------------------------------------------------
    def _ovo_problems(self, labels: np.ndarray, rows: np.ndarray, classes: np.ndarray):
        """OneVsOneClassifier's pairs (i < j over `classes`), each over `rows` of its two classes, +1 = j."""
        members = {k: rows[labels[rows] == k] for k in classes}
        pairs, index, targets = [], [], []
        for a, i in enumerate(classes):
            for j in classes[a + 1:]:
                both = np.concatenate([members[i], members[j]])
                pairs.append((i, j))
                index.append(both)
                targets.append(np.concatenate([-np.ones(len(members[i])), np.ones(len(members[j]))]))
        return pairs, index, targets

    def _ovo_votes(self, x_eval: torch.Tensor, w: torch.Tensor, pairs, n_classes: int) -> np.ndarray:
        """sklearn's OneVsOneClassifier.decision_function: votes + sum of confidences / (3 (|sum| + 1))."""
        votes = torch.zeros((len(x_eval), n_classes), dtype=self.dtype, device=self.device)
        confidence = torch.zeros_like(votes)
        first = torch.as_tensor([p[0] for p in pairs], device=self.device)
        second = torch.as_tensor([p[1] for p in pairs], device=self.device)
        width = max(1, self.budget // 4 // max(1, len(x_eval) * x_eval.element_size()))
        for part in _chunks(len(pairs), width):
            decision = x_eval @ w[:, part]
            won = (decision > 0).to(self.dtype)
            votes.index_add_(1, second[part], won)
            votes.index_add_(1, first[part], 1 - won)
            confidence.index_add_(1, second[part], decision)
            confidence.index_add_(1, first[part], -decision)
        return (votes + confidence / (3 * (confidence.abs() + 1))).cpu().numpy()

    def ovo(self, train_x, train_y, test_x, c_grid: Sequence[float], splits, fixed_c: float | None):
        """(chosen C, {C: mean CV balanced accuracy}, test predictions) of one-vs-one with voting."""
        from sklearn.metrics import balanced_accuracy_score

        present, labels = np.unique(np.asarray(train_y), return_inverse=True)
        x = _augment(train_x, self.device, self.dtype)
        scores, start = {}, None
        if fixed_c is None and splits:
            problems = []   # per fold: pairs, rows, targets
            for fit, _ in splits:
                problems.append(self._ovo_problems(labels, np.asarray(fit), np.unique(labels[fit])))
            rows = [r for p in problems for r in p[1]]
            targets = [t for p in problems for t in p[2]]
            w, solutions = None, {}
            for c in sorted(c_grid):
                w = self._gathered(x, rows, targets, [c] * len(rows), w)
                solutions[c] = w
                fold_scores, offset = [], 0
                for (fit, held), (pairs, _, _) in zip(splits, problems):
                    seen = np.unique(labels[fit])
                    position = {k: q for q, k in enumerate(seen)}
                    local = [(position[i], position[j]) for i, j in pairs]
                    votes = self._ovo_votes(x[torch.as_tensor(held, device=self.device)],
                                            w[:, offset:offset + len(pairs)], local, len(seen))
                    fold_scores.append(balanced_accuracy_score(labels[held], seen[votes.argmax(1)]))
                    offset += len(pairs)
                scores[c] = float(np.mean(fold_scores))
            chosen = float(max(c_grid, key=lambda c: (scores[c], -c)))
            n_pairs = len(problems[0][0])
            if all(len(p[0]) == n_pairs for p in problems):
                start = solutions[chosen].reshape(x.shape[1], len(splits), n_pairs).mean(1)
        else:
            chosen = 1.0 if fixed_c is None else float(fixed_c)
        classes = np.arange(len(present))
        pairs, rows, targets = self._ovo_problems(labels, np.arange(len(labels)), classes)
        w = self._gathered(x, rows, targets, [chosen] * len(rows), start)
        votes = self._ovo_votes(_augment(test_x, self.device, self.dtype), w, pairs, len(present))
        return chosen, {str(c): scores[c] for c in c_grid if c in scores}, present[votes.argmax(1)]

    # multi-label (VOC) ---------------------------------------------------------------------------
    def multilabel(self, train_x, train_y, test_x, c_grid: Sequence[float], class_splits, fixed_c: float | None):
        """Per class k: C by CV on its non-difficult rows (class_splits[k]: folds, None: no CV -> its
        `fixed` C), then the refit's test decision values. Returns (chosen (K,), cv scores per class, scores)."""
        from sklearn.metrics import average_precision_score

        y = np.asarray(train_y)
        n, n_classes = y.shape
        x = _augment(train_x, self.device, self.dtype)
        signs = torch.as_tensor(np.where(y == 1, 1, -1).astype(np.int8), device=self.device)
        keep = torch.as_tensor(y != 0, device=self.device)
        columns = [(k, f) for k in range(n_classes) if class_splits[k][0] for f in range(len(class_splits[k][0]))]
        chosen = [class_splits[k][1] for k in range(n_classes)]
        cv_all: list[dict] = [{} for _ in range(n_classes)]
        start = None
        if columns:
            mask = torch.zeros((n, len(columns)), dtype=torch.bool, device=self.device)
            for q, (k, f) in enumerate(columns):
                mask[torch.as_tensor(class_splits[k][0][f][0], device=self.device), q] = True
            y_cols = signs[:, [k for k, _ in columns]]
            w, solutions, raw = None, {}, {}
            for c in sorted(c_grid):
                w = self._shared(x, y_cols, mask, [c] * len(columns), w)
                solutions[c] = w
                for q, (k, f) in enumerate(columns):
                    held = class_splits[k][0][f][1]
                    decision = (x[torch.as_tensor(held, device=self.device)] @ w[:, q]).cpu().numpy()
                    raw.setdefault((k, c), []).append(average_precision_score(y[held, k] == 1, decision))
            start = torch.zeros((x.shape[1], n_classes), dtype=self.dtype, device=self.device)
            for k in range(n_classes):
                if class_splits[k][0]:
                    cv_all[k] = {c: float(np.mean(raw[(k, c)])) for c in c_grid}
                    chosen[k] = float(max(c_grid, key=lambda c, s=cv_all[k]: (s[c], -c)))
                    qs = [q for q, (kk, _) in enumerate(columns) if kk == k]
                    start[:, k] = solutions[chosen[k]][:, qs].mean(1)
        w = self._shared(x, signs, keep, [float(c) for c in chosen], start)
        scores = (_augment(test_x, self.device, self.dtype) @ w).cpu().numpy().astype(np.float64)
        return [float(c) for c in chosen], [{str(c): s for c, s in d.items()} for d in cv_all], scores


# ---- weighted k-NN ---------------------------------------------------------------------------------

def knn_votes(train: np.ndarray, train_y: np.ndarray, test: np.ndarray, n_classes: int, ks: Sequence[int],
              temperature: float, multilabel: bool, device="cpu", budget: int = BUDGET_BYTES) -> dict[int, np.ndarray]:
    """{k: (m, C) summed weights exp(similarity / T) of the k most similar training rows} for every k,
    from one similarity GEMM + top-k per chunk of test rows on `device` (features already L2-normalised).
    Ties among equal similarities may order differently from numpy's stable sort."""
    device = torch.device(device)
    db = torch.as_tensor(np.asarray(train, dtype=np.float32), device=device)
    queries = torch.as_tensor(np.asarray(test, dtype=np.float32), device=device)
    widest = min(max(ks), len(db))
    labels = torch.as_tensor(np.asarray(train_y), device=device).long()
    has = (labels == 1).to(torch.float64) if multilabel else None
    out = {k: np.zeros((len(queries), n_classes), dtype=np.float64) for k in ks}
    rows_per_chunk = max(1, budget // 4 // max(1, len(db) * 4))
    for part in _chunks(len(queries), rows_per_chunk):
        similarity = queries[part] @ db.T
        top, order = torch.topk(similarity, widest, dim=1, largest=True, sorted=True)
        weights = torch.exp(top.to(torch.float64) / temperature)
        rows = len(order)
        for k in ks:
            kk = min(k, widest)
            if multilabel:
                votes = torch.einsum("qk,qkc->qc", weights[:, :kk], has[order[:, :kk]])
            else:
                votes = torch.zeros((rows, n_classes), dtype=torch.float64, device=device)
                votes.scatter_add_(1, labels[order[:, :kk]], weights[:, :kk])
            out[k][part] = votes.cpu().numpy()
    return out
