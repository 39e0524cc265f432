"""Which operators one trainer iteration's time goes to on this CPU: torch.profiler over one --bench step (after two
warm-up steps), the top operators by their own CPU time; then F.dropout against an equivalent mask from rand_like
on one 16×128×32×32 activation, since dropout's bernoulli_ runs on one thread on CPU.
Run from the repo root, e.g.:
  python results/profile_iteration.py score_free --preset small --batch 16 --cls-steps 1 --device cpu
  python results/profile_iteration.py diff_instruct --preset small --batch 16 --device cpu"""
import importlib
import os
import sys
import time

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import common  # noqa: E402


def profile_step(name, step, args, device, flops_per_image, params):
    """Stands in for common.run_bench: the trainer's own bench() builds the iteration, this profiles it."""
    for _ in range(2):  # warm-up
        step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    print(prof.key_averages().table(sort_by='self_cpu_time_total', row_limit=15))


def ms(fn, n=20):
    fn()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return 1000 * (time.perf_counter() - t0) / n


if __name__ == '__main__':
    trainer = importlib.import_module(sys.argv[1])
    common.run_bench = profile_step
    trainer.main(['--bench', '--bench-steps', '1'] + sys.argv[2:])
    x = torch.randn(16, 128, 32, 32)
    print(f'F.dropout(p=0.13): {ms(lambda: torch.nn.functional.dropout(x, 0.13, True)):.1f} ms; '
          f'rand_like(x) < 0.87: {ms(lambda: torch.rand_like(x) < 0.87):.1f} ms')
