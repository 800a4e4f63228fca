"""Benchmark of the MuJoCo simulation: scenes written per second, grasp lift rate.

Measures synthetic BOP scenes per second and the physical lift success rate of the
generator's top grasps (GT poses) over random synthetic scenes.

    .venv/bin/python bench/bench_sim.py [--scenes 10] [--images-per-scene 3]
                                        [--grasp-objects 50] [--seed 0]

Prints the machine, the write rate (scenes/s, images/s), then the grasp-check figures:
objects executed, lifted, success rate (target >= 95%), every failure with its reason,
and the objects the generator gave no grasp label (not counted).
"""

import argparse
from collections import Counter
import json
import os
from pathlib import Path
import platform
import statistics
import tempfile
import time

import numpy as np


def machine():
    """One line describing this machine."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path('/proc/cpuinfo').read_text().splitlines():
            if line.startswith('model name'):
                cpu = line.split(':', 1)[1].strip()
                break
    except OSError:
        pass
    return (f'{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, '
            f'MUJOCO_GL={os.environ.get("MUJOCO_GL")}')


def bench_write(root, scenes, images, seed):
    """Write a synthetic dataset; return its stats."""
    from bopask_gen.sim.synth import generate_dataset
    return generate_dataset(root, scenes, images, seed=seed, progress=False)


def bench_grasps(root, n_objects, seed, batch=8):
    """Generate scenes batch by batch until ``n_objects`` grasps were executed."""
    from bopask_gen.core.bop import BopDataset
    from bopask_gen.sim.grasp_check import iter_checks, summarize
    from bopask_gen.sim.synth import generate_dataset
    records, first = [], 0
    rng = np.random.default_rng(seed)
    while sum(r['status'] != 'no_grasp' for r in records) < n_objects:
        generate_dataset(root, batch, 1, seed=seed + 1000 + first, progress=False,
                         first_scene_id=first)
        need = n_objects - sum(r['status'] != 'no_grasp' for r in records)
        records += list(iter_checks(BopDataset(root), 'train_synth', rng, max_objects=need,
                                    progress=False, scene_ids=range(first, first + batch)))
        first += batch
    return records, summarize(records)


def main():
    """Run both benchmarks and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--scenes', type=int, default=10)
    parser.add_argument('--images-per-scene', type=int, default=3)
    parser.add_argument('--grasp-objects', type=int, default=50)
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args()
    import bopask_gen.sim.world  # noqa: F401  (chooses the GL backend)
    print(f'machine: {machine()}')
    with tempfile.TemporaryDirectory() as tmp:
        stats = bench_write(Path(tmp) / 'write', args.scenes, args.images_per_scene,
                            args.seed)
        print(f'synth: {stats["scenes"]} scenes x {args.images_per_scene} images '
              f'({stats["instances"]} object instances) in {stats["seconds"]:.1f} s: '
              f'{stats["scenes_per_s"]:.2f} scenes/s, '
              f'{stats["images"] / stats["seconds"]:.2f} images/s')
        t0 = time.perf_counter()
        records, summary = bench_grasps(Path(tmp) / 'grasps', args.grasp_objects, args.seed)
        elapsed = time.perf_counter() - t0
    done = [r for r in records if r['status'] != 'no_grasp']
    print(f'grasp-check: {summary["lifted"]}/{summary["objects"]} lifted, success rate '
          f'{summary["success_rate"]:.1%} (target >= 95%), {elapsed:.0f} s, median '
          f'{statistics.median(r["seconds"] for r in done):.2f} s per pick')
    top = sum(r['approach_z_world'] < -0.9 for r in done)
    print(f'  approach from above (z < -0.9): {top}/{len(done)}')
    for r in summary['failures']:
        print(f'  FAILED scene {r["scene_id"]} gt {r["gt_index"]} obj {r["obj_id"]} '
              f'(width {r["width_m"] * 100:.1f} cm, approach z {r["approach_z_world"]}): '
              f'{r["reason"]}')
    no_grasp = Counter(r['obj_id'] for r in summary['no_grasp'])
    print(f'  objects without a grasp label (not counted): {len(summary["no_grasp"])}, by '
          f'obj_id: {dict(sorted(no_grasp.items()))}')
    per_obj = Counter(r['obj_id'] for r in done)
    print(f'  executed by obj_id: {dict(sorted(per_obj.items()))}')
    print(json.dumps({k: summary[k] for k in ('objects', 'lifted', 'success_rate')}))


if __name__ == '__main__':
    main()
