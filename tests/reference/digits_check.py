#!/usr/bin/python3
"""Independent check of lrfind_dist against plain PyTorch (issue 2, acceptance 2 and 3).

Builds the scikit-learn digits set as HDF5 and a TorchScript MLP, runs
  lrfind_dist --model M.pt --data D.h5 --optimizer sgd --min-lr 1e-5 --max-lr 10
              --num-training 100 --beta 0 --early-stop-threshold none --batch-size 32
              --no-shuffle --threads 1 --out R.h5
then trains a copy of the same weights on the same batches in a plain PyTorch loop and
compares loss_raw step by step (relative difference, until divergence), and recomputes
every suggestion from the stored curve with numpy (docs/algorithm.md / fastai definitions).

Needs Debian's python3-torch, python3-h5py, python3-sklearn. Usage:
  /usr/bin/python3 tests/reference/digits_check.py build/lrfind_dist [workdir]
"""
import math
import os
import subprocess
import sys
import tempfile

import h5py
import numpy as np
import torch
from sklearn.datasets import load_digits

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from suggest_reference import slide, valley  # noqa: E402

binary = os.path.abspath(sys.argv[1])
work = sys.argv[2] if len(sys.argv) > 2 else tempfile.mkdtemp(prefix="lrfind_digits_")
os.makedirs(work, exist_ok=True)
data_path, model_path, out_path = (os.path.join(work, n) for n in ("digits.h5", "mlp.pt", "r.h5"))

digits = load_digits()
x = (digits.data / 16.0).astype(np.float32)
y = digits.target.astype(np.int64)
with h5py.File(data_path, "w") as f:
    f["x"] = x
    f["y"] = y

torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))
torch.jit.script(model).save(model_path)
reference = torch.jit.load(model_path)  # the exact weights lrfind_dist loads

if os.path.exists(out_path):
    os.remove(out_path)
cmd = [binary, "--model", model_path, "--data", data_path, "--optimizer", "sgd", "--min-lr", "1e-5",
       "--max-lr", "10", "--num-training", "100", "--beta", "0", "--early-stop-threshold", "none",
       "--batch-size", "32", "--no-shuffle", "--threads", "1", "--out", out_path, "--plot", ""]
subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)

with h5py.File(out_path, "r") as f:
    lr = f["lr"][:]
    loss_raw = f["loss_raw"][:]
    loss = f["loss"][:]
    sugg = {k: f["suggestions"].attrs[k] for k in f["suggestions"].attrs}
    attrs = dict(f.attrs)

# Independent loop: same weights, batches in file order cycling over the data, the lr
# of step k set before the step, the loss recorded before the update.
torch.set_num_threads(1)
opt = torch.optim.SGD(reference.parameters(), lr=1e-5)
n, bs, steps = len(x), 32, 100
xt, yt = torch.from_numpy(x), torch.from_numpy(y)
expected = []
reference.train()
for k in range(steps):
    lr_k = 1e-5 * (10 / 1e-5) ** (k / (steps - 1))
    for g in opt.param_groups:
        g["lr"] = lr_k
    idx = torch.tensor([(k * bs + j) % n for j in range(bs)])
    opt.zero_grad()
    l = torch.nn.functional.cross_entropy(reference(xt[idx]), yt[idx])
    expected.append(l.item())
    l.backward()
    opt.step()
expected = np.array(expected)

finite = np.isfinite(expected) & np.isfinite(loss_raw)
first_bad = int(np.argmin(finite)) if not finite.all() else steps
rel = np.abs(loss_raw[:first_bad] - expected[:first_bad]) / np.abs(expected[:first_bad])
# "until divergence": the first step where the reference loss exceeds 4x its minimum so far
div = next((k for k in range(1, first_bad) if expected[k] > 4 * expected[:k].min()), first_bad)
print(f"steps recorded: {len(loss_raw)}, stop_reason={attrs['stop_reason']}, divergence at step {div}")
print(f"max relative difference of loss_raw vs PyTorch before divergence: {rel[:div].max():.3e}")
print(f"max relative difference over all finite steps: {rel.max():.3e}")
ok = rel[:div].max() < 1e-4

# Suggestions recomputed from the stored smoothed curve.
sb, se = int(attrs["skip_begin"]), int(attrs["skip_end"])
keep = [k for k in range(sb, len(loss) - se) if np.isfinite(loss[k])]
L, R = loss[keep], lr[keep]
mine = {
    "steepest": keep[int(np.gradient(L, np.log10(R)).argmin())],
    "valley": keep[min(max(valley(R, L), 0), len(L) - 1)],
    "minimum": keep[int(L.argmin())],
    "steep": keep[int(((L[1:] - L[:-1]) / (np.log(R[1:]) - np.log(R[:-1]))).argmin())],
    "slide": keep[slide(R, L)] if len(L) > 15 else -1,
}
for m, idx in mine.items():
    stored = int(sugg[f"{m}_index"])
    good = stored == idx
    ok &= good
    print(f"  {m:9s} stored index {stored:3d} lr {sugg[f'{m}_lr']:.4g}  numpy index {idx:3d}  {'ok' if good else 'MISMATCH'}")
print("suggested_lr", attrs["suggested_lr"], "=", sugg["steepest_lr"])
ok &= attrs["suggested_lr"] == sugg["steepest_lr"]
print("PASS" if ok else "FAIL")
sys.exit(0 if ok else 1)
