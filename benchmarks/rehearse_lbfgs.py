"""How well `sassl rehearse` predicts L-BFGS's seconds per iteration: its figure
(workloads/rehearse/evaluation.py: the run's solver for a few iterations on at most 4,096
rows, scaled in rows) against a real fit on all rows (max_iter 40, the grid's weakest λ), on
random features of a few target sizes. Prints both and their ratio (real / rehearsal; the
rehearsal is meant to be within a factor 1.5). Run it on an idle machine:

    .venv/bin/python benchmarks/rehearse_lbfgs.py
"""
from __future__ import annotations

import time

import torch

from workloads.rehearse.evaluation import lbfgs_cost
from workloads.spec import LbfgsSpec
from workloads.evaluation.lbfgs import fit_logistic_lbfgs

SIZES = ((4500, 512, 10), (13500, 2048, 100), (40000, 2048, 100))  # (train rows, feature width, classes)


def main() -> None:
    lb = LbfgsSpec(enabled=True, l2_exponents=(-6.0, 5.0, 45), select_by="top1", max_iter=1000)  # the schema's
    for n, d, c in SIZES:
        predicted = lbfgs_cost(lb, n, 0, c, d)["lbfgs_s_per_iteration"]
        g = torch.Generator().manual_seed(1)
        x, y = torch.randn(n, d, generator=g), torch.randint(0, c, (n,), generator=g)
        fit_logistic_lbfgs(x[:256], y[:256], c, 1e-6, max_iter=2)  # the solver's first-call costs
        t0 = time.perf_counter()
        _, _, iterations = fit_logistic_lbfgs(x, y, c, 1e-6, max_iter=40)
        real = (time.perf_counter() - t0) / iterations
        print(f"N={n:>6} D={d:>5} C={c:>4}: rehearsal {predicted:.4f} s/iteration, real fit {real:.4f} "
              f"({iterations} iterations), real / rehearsal {real / predicted:.2f}")


if __name__ == "__main__":
    main()
