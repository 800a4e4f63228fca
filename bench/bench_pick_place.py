"""Benchmark of the simulated pick and place from language commands (issue 5 targets).

Runs N random episodes (default 20) through the real graph -- sim camera, oracle VLM,
back-projection, IK executor, MuJoCo physics -- exactly as ``bopask demo --episodes N``, and
reports:

- success rate, judged in physics (object lifted >= 5 cm, ends within 20 cm of the target);
  target >= 95 %;
- latency from the command to the first JointTrajectory, minus the model's inference time
  (the oracle's time, which stands in for the model); target < 100 ms;
- back-projection time per request (the node's lift of the keypoints); target < 1 ms.

Usage: ``python bench/bench_pick_place.py [--episodes 20] [--seed 0] [--out DIR]``.
The last line is the JSON summary of ``bopask demo``.
"""

import argparse
import json
import os
from pathlib import Path
import platform
import time

import numpy as np


def machine():
    """One line describing the machine."""
    cpu = platform.processor() or platform.machine()
    try:
        with open('/proc/cpuinfo') as f:
            names = [ln.split(':', 1)[1].strip() for ln in f if ln.startswith('model name')]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, 'getloadavg') else float('nan')
    return f'{cpu}, {os.cpu_count()} cores, load {load:.1f}, Python {platform.python_version()}'


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--episodes', type=int, default=20)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--real-time-factor', type=float, default=2.0)
    parser.add_argument('--out', type=Path, default=Path('bench_pick_place_out'))
    args = parser.parse_args()
    if args.episodes < 1:
        parser.error('--episodes must be >= 1')

    from bopask_gen.generator.names import load_name_table
    from bopask_ros.demo import run_episode, start_graph, summary, write_strip
    from bopask_ros.episodes import random_episode
    names = load_name_table('ycbv')
    rng = np.random.default_rng(args.seed)
    episodes = [random_episode(rng, names) for _ in range(args.episodes)]
    print(f'machine: {machine()}', flush=True)
    t0 = time.perf_counter()
    graph, client = start_graph({}, args.real_time_factor)
    results = []
    try:
        for i, ep in enumerate(episodes):
            r = run_episode(graph, client, ep)
            results.append(r)
            lat, bp = r['command_to_trajectory_ms'], r['backprojection_ms']
            print(f'{i + 1:2d}/{len(episodes)} {"ok  " if r["success"] else "FAIL"} '
                  f'{r["command"]!r}: rise {r["rise_m"] * 100:.1f} cm, end gap '
                  f'{r["gap_m"] * 100:.1f} cm, executor {r["executor"]}'
                  + (f' ({r["reason"][:120]})' if r['reason'] else '')
                  + (f', cmd->traj {lat:.1f} ms' if lat is not None else '')
                  + (f', backproj {bp:.3f} ms ({r["backprojection_cpu_ms"]:.3f} CPU)'
                     if bp is not None else '')
                  + (f', oracle {r["inference_ms"]:.0f} ms' if r['inference_ms'] else ''),
                  flush=True)
    finally:
        graph.shutdown()
    s = summary(results)
    lats = [r['command_to_trajectory_ms'] for r in results if r['command_to_trajectory_ms']]
    bps = [r['backprojection_ms'] for r in results if r['backprojection_ms']]
    cpus = [r['backprojection_cpu_ms'] for r in results if r['backprojection_cpu_ms']]
    print(f'success rate {s["successes"]}/{s["episodes"]} = {s["success_rate"]:.0%} '
          f'(target >= 95%)')
    if lats:
        print(f'command -> first JointTrajectory, excluding inference: median '
              f'{np.median(lats):.1f} ms, p90 {np.percentile(lats, 90):.1f} ms, max '
              f'{np.max(lats):.1f} ms (target < 100 ms)')
    if bps:
        print(f'back-projection per request: median {np.median(bps):.3f} ms wall, p90 '
              f'{np.percentile(bps, 90):.3f} ms; thread CPU median {np.median(cpus):.3f} ms '
              f'(target < 1 ms)')
    args.out.mkdir(parents=True, exist_ok=True)
    print(f'strip: {write_strip(results, args.out / "episodes.png")}; total '
          f'{time.perf_counter() - t0:.0f} s')
    (args.out / 'episodes.json').write_text(json.dumps(
        [{k: v for k, v in r.items() if k not in ('before', 'after')} for r in results],
        indent=1))
    print(json.dumps(s))


if __name__ == '__main__':
    main()
