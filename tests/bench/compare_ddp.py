#!/usr/bin/python3
"""Seconds per step of `mpirun -np 2 lrfind_dist` against the same loop in PyTorch DDP
(ddp_baseline.py, gloo), on the same TorchScript model, data, batch and schedule.

  /usr/bin/python3 tests/bench/compare_ddp.py build/lrfind_dist [--world 2] [--hidden 512]

Writes the model and data to a temporary directory, runs both, and prints both medians
and the ratio lrfind / DDP (below 1: lrfind is faster). Needs python3-torch,
python3-h5py and Open MPI's mpirun.
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile

import h5py
import numpy as np
import torch

here = os.path.dirname(os.path.abspath(__file__))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("binary")
    p.add_argument("--world", type=int, default=2)
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--warmup", type=int, default=10)
    args = p.parse_args()
    work = tempfile.mkdtemp(prefix="lrfind_ddp_")
    model_path, data_path, out = (os.path.join(work, n) for n in ("m.pt", "d.h5", "r.h5"))

    rng = np.random.default_rng(0)
    x = rng.standard_normal((8192, 128)).astype(np.float32)
    y = (x[:, :10].argmax(1)).astype(np.int64)
    with h5py.File(data_path, "w") as f:
        f["x"], f["y"] = x, y
    torch.manual_seed(0)
    h = args.hidden
    model = torch.nn.Sequential(torch.nn.Linear(128, h), torch.nn.ReLU(), torch.nn.Linear(h, h), torch.nn.ReLU(),
                                torch.nn.Linear(h, 10))
    torch.jit.script(model).save(model_path)
    n_params = sum(q.numel() for q in model.parameters())

    ddp = subprocess.run([sys.executable, os.path.join(here, "ddp_baseline.py"), "--model", model_path, "--data",
                          data_path, "--world", str(args.world), "--batch-size", str(args.batch_size), "--steps",
                          str(args.steps), "--warmup", str(args.warmup)], check=True, capture_output=True, text=True)
    ddp_ms = float(ddp.stdout.split(":")[-1].split("ms")[0])

    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMPI_MCA_rmaps_base_oversubscribe="1")
    subprocess.run(["mpirun", "-np", str(args.world), os.path.abspath(args.binary), "--model", model_path, "--data",
                    data_path, "--batch-size", str(args.batch_size), "--num-training", str(args.steps), "--min-lr",
                    "1e-5", "--max-lr", "1e-2", "--early-stop-threshold", "none", "--no-shuffle", "--threads", "1",
                    "--out", out, "--plot", "", "--force"], check=True, env=env, capture_output=True)
    with h5py.File(out, "r") as f:
        lrfind_ms = statistics.median(f["step_seconds"][args.warmup:]) * 1e3

    print(f"compare_ddp: MLP 128-{h}-{h}-10 ({n_params} parameters), {args.world} ranks x batch {args.batch_size}, "
          f"{args.steps} steps, 1 thread per rank, medians after {args.warmup} warm-up steps")
    print(f"  PyTorch DDP (gloo)        {ddp_ms:8.3f} ms/step")
    print(f"  mpirun lrfind_dist        {lrfind_ms:8.3f} ms/step")
    print(f"  ratio lrfind / DDP        {lrfind_ms / ddp_ms:8.3f}")


if __name__ == "__main__":
    main()
