#!/usr/bin/python3
"""The baseline for lrfind's distributed sweep: the same LR range test loop written with
PyTorch DistributedDataParallel (gloo backend, CPU), one process per rank.

Each step sets the lr of the exponential schedule, trains one batch per rank (DDP
averages the gradients), and reads the loss, as an LR finder must. Prints the median
seconds per step (rank 0's wall time per step, after a warm-up).

  /usr/bin/python3 tests/bench/ddp_baseline.py --model m.pt --data d.h5 \\
      [--world 2] [--batch-size 32] [--steps 100] [--warmup 10]

Needs Debian's python3-torch and python3-h5py.
"""
import argparse
import os
import statistics
import time

import h5py
import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def worker(rank, args, queue):
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(args.port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=args.world)
    with h5py.File(args.data, "r") as f:
        x = torch.from_numpy(f["x"][:]).float()
        y = torch.from_numpy(f["y"][:]).long()
    model = torch.jit.load(args.model)
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    opt = torch.optim.SGD(ddp.parameters(), lr=args.min_lr)
    n, w, b = len(x), args.world, args.batch_size
    times = []
    for k in range(args.steps):
        t0 = time.perf_counter()
        lr = args.min_lr * (args.max_lr / args.min_lr) ** (k / (args.steps - 1))
        for g in opt.param_groups:
            g["lr"] = lr
        # the same stride split as lrfind: rank r takes positions r, r+W, ... of the global batch
        idx = torch.tensor([(k * w * b + rank + j * w) % n for j in range(b)])
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(ddp(x[idx]), y[idx])
        loss.backward()
        opt.step()
        total = loss.detach().clone()
        dist.reduce(total, 0)  # the global loss reaches rank 0, as lrfind's does
        total.item()
        times.append(time.perf_counter() - t0)
    if rank == 0:
        queue.put(statistics.median(times[args.warmup:]))
    dist.destroy_process_group()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--world", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--min-lr", type=float, default=1e-5)
    p.add_argument("--max-lr", type=float, default=1e-2)
    p.add_argument("--port", type=int, default=29531)
    args = p.parse_args()
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=worker, args=(r, args, queue)) for r in range(args.world)]
    for proc in procs:
        proc.start()
    seconds = queue.get()
    for proc in procs:
        proc.join()
    print(f"ddp_baseline: {args.world} ranks, batch {args.batch_size}/rank: {seconds * 1e3:.3f} ms/step (median)")
    return seconds


if __name__ == "__main__":
    main()
