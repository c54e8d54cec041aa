"""BoTorch on the same problem as `benches/suggest.rs` (called by it with a JSON file).

Fits a SingleTaskGP with the observations' known noise (train_Yvar), by marginal likelihood, and
chooses q = 48 of the candidates with qLogNEI (sequential greedy over the discrete set), on one CPU
thread. Prints the wall time in milliseconds.
"""
import json
import sys
import time

import torch
from botorch.acquisition.logei import qLogNoisyExpectedImprovement
from botorch.fit import fit_gpytorch_mll
from botorch.models import SingleTaskGP
from botorch.models.transforms import Normalize, Standardize
from botorch.optim import optimize_acqf_discrete
from gpytorch.mlls import ExactMarginalLogLikelihood

torch.set_num_threads(1)
torch.manual_seed(1)
problem = json.load(open(sys.argv[1]))
X = torch.tensor(problem["x"], dtype=torch.double)
Y = torch.tensor(problem["y"], dtype=torch.double).unsqueeze(-1)
Yvar = torch.tensor(problem["noise_var"], dtype=torch.double).unsqueeze(-1)
C = torch.tensor(problem["candidates"], dtype=torch.double)

start = time.perf_counter()
model = SingleTaskGP(X, Y, train_Yvar=Yvar, input_transform=Normalize(d=X.shape[-1]), outcome_transform=Standardize(m=1))
fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model))
acq = qLogNoisyExpectedImprovement(model, X_baseline=X, prune_baseline=True)
picks, _ = optimize_acqf_discrete(acq, q=problem["batch"], choices=C, unique=True)
print(f"{(time.perf_counter() - start) * 1e3:.1f}")
