#!/usr/bin/python3
"""Reference values for tests/unit/suggest_test.cpp, computed with numpy following
fastai's definitions (fastai/callback/schedule.py: valley, slide, minimum, steep) and
docs/algorithm.md's steepest (numpy.gradient over log10(lr)). Run it to regenerate the
expected indices; the C++ test does not need Python."""
import math
import numpy as np


def curve(n):
    lrs = np.array([1e-5 * (10.0 / 1e-5) ** (k / (n - 1)) for k in range(n)])
    x = np.log10(lrs)
    loss = 2.3 - 1.5 / (1 + np.exp(-3 * (x + 2.5))) + 0.02 * np.sin(7.3 * np.arange(n))
    loss = loss + np.where(x > -0.5, (x + 0.5) ** 2 * 3, 0)
    return lrs, loss


def valley(lrs, losses):
    n = len(losses)
    max_start, max_end = 0, 0
    lds = [1] * n
    for i in range(1, n):
        for j in range(0, i):
            if losses[i] < losses[j] and lds[i] < lds[j] + 1:
                lds[i] = lds[j] + 1
            if lds[max_end] < lds[i]:
                max_end = i
                max_start = max_end - lds[max_end]
    sections = (max_end - max_start) / 3
    return max_start + int(sections) + int(sections / 2)


def slide(lrs, losses, lr_diff=15, thresh=.005):
    g = np.gradient(losses)
    r, l = -1, -1 - lr_diff
    chosen = l
    while l >= -len(losses) and abs(g[r] - g[l]) > thresh:
        chosen = l
        r -= 1
        l -= 1
    return len(losses) + chosen


if __name__ == "__main__":
    for n in (60, 100):
        lrs, loss = curve(n)
        sb, se = 10, 1
        L, R = loss[sb:n - se], lrs[sb:n - se]
        steepest = int(np.gradient(L, np.log10(R)).argmin()) + sb
        steep = int(((L[1:] - L[:-1]) / (np.log(R[1:]) - np.log(R[:-1]))).argmin()) + sb
        print(f"n={n}: steepest={steepest} valley={valley(R, L) + sb} minimum={int(L.argmin()) + sb} "
              f"steep={steep} slide={slide(R, L) + sb}")
