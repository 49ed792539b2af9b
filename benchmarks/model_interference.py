"""How much slower opsearch kernels run inside a PyTorch model than alone: the demo's TCN
(`opsearch demo`'s step 3), its dilated Conv1d layers swapped by ``opsearch.optimize``.

    python benchmarks/model_interference.py [--db URL] [--forwards 200]

Prints, for one process: the model's forward time, the mean time of one opsearch layer inside
the model (forward hooks around each swapped layer), and the same layer called alone on the
same input shape. Run it under different thread settings to compare, e.g.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/model_interference.py
    python benchmarks/model_interference.py --torch-threads 1

(``OMP_WAIT_POLICY`` must be set before torch is imported; libgomp reads it once.) The database
should hold tuned records of the TCN's layers (``make demo`` leaves them in the default one);
without them the layers run their default schedules, which still shows the effect.
"""

from __future__ import annotations

import argparse
import os
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", default=None, help="database URL (default: $OPSEARCH_DB or the user's SQLite file)")
    ap.add_argument("--forwards", type=int, default=200)
    ap.add_argument("--torch-threads", type=int, default=None, help="torch.set_num_threads before running")
    args = ap.parse_args()

    import torch

    from opsearch.torch_bridge import optimize
    from opsearch.cli.demo_cmd import tcn

    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    torch.manual_seed(0)
    x = torch.randn(4, 32, 1024)
    model, _ = optimize.optimize(tcn().eval(), (x,), target="cpu", db=args.db, tune=False)
    layers = [m for m in model.modules() if type(m).__name__ == "DilatedConv1d"]
    spent, started = [0.0], [0.0]
    for m in layers:
        m.register_forward_pre_hook(lambda *a: started.__setitem__(0, time.perf_counter()))
        m.register_forward_hook(lambda *a: spent.__setitem__(0, spent[0] + time.perf_counter() - started[0]))
    with torch.no_grad():
        for _ in range(args.forwards // 4):
            model(x)
        spent[0] = 0.0
        t = time.perf_counter()
        for _ in range(args.forwards):
            model(x)
        model_ms = (time.perf_counter() - t) / args.forwards * 1e3
        in_model_us = spent[0] / args.forwards / len(layers) * 1e6
        layer = layers[0]
        xi = torch.randn(4, 32, 1024)
        for _ in range(20):
            layer(xi)
        t = time.perf_counter()
        for _ in range(args.forwards):
            layer(xi)
        alone_us = (time.perf_counter() - t) / args.forwards * 1e6
    env = {k: os.environ[k] for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "TVM_NUM_THREADS") if k in os.environ}
    print(f"settings {env or 'defaults'}, torch threads {torch.get_num_threads()}: model {model_ms:.3f} ms; "
          f"{len(layers)} opsearch layers, one inside the model {in_model_us:.0f} us, alone {alone_us:.0f} us "
          f"({in_model_us / alone_us:.2f}x)")


if __name__ == "__main__":
    main()
