"""Per-stage time of the generator's geometric annotators on the real YCB-V subset.

Prints the median CPU milliseconds (process time, so other load on the machine matters
less) per image of each stage (scene geometry with the plane fit,
cuboids, top-5 grasps of every object, rearrangement of every object, one trajectory per
ordered pair, spatial + depth relations of every pair), the total, and the machine.
Model loading and decimation happen once per process and are reported separately.

Usage: .venv/bin/python bench/bench_generator_annotators.py [DATASET_DIR] [--repeat N]
"""

import argparse
import itertools
import os
from pathlib import Path
import platform
import time

import numpy as np

from bopask_gen.core.bop import BopDataset
from bopask_gen.generator.cuboid import cuboid_points_px
from bopask_gen.generator.grasps import top_grasps
from bopask_gen.generator.rearrangement import blocker_point_px, find_blockers
from bopask_gen.generator.relations import depth_relation, spatial_relations
from bopask_gen.generator.scene import build_scene_geometry
from bopask_gen.generator.trajectory import plan_trajectory

DEFAULT = Path(__file__).resolve().parents[2] / 'shared' / 'data' / 'ycbv_real_subset'


def annotate(dataset, frame, times):
    """Run every annotator on one frame, adding per-stage seconds to ``times``."""
    rng = np.random.default_rng(frame.im_id)
    t = time.process_time()
    scene = build_scene_geometry(dataset, frame, rng)
    times.setdefault('scene', []).append(time.process_time() - t)
    pairs = list(itertools.permutations(scene.objects, 2))
    stages = {
        'cuboid': lambda: [cuboid_points_px(scene, o) for o in scene.objects],
        'grasp': lambda: [top_grasps(scene, o, rng) for o in scene.objects],
        'rearrangement': lambda: [[blocker_point_px(scene, scene.object_by_gt(b))
                                   for b in (find_blockers(scene, o, rng) or [])]
                                  for o in scene.objects],
        'trajectory': lambda: [plan_trajectory(scene, a, b, rng) for a, b in pairs],
        'relations': lambda: [(spatial_relations(scene, a, b), depth_relation(scene, a, b))
                              for a, b in pairs],
    }
    for name, fn in stages.items():
        t = time.process_time()
        fn()
        times.setdefault(name, []).append(time.process_time() - t)
    times.setdefault('pairs', []).append(len(pairs))


def main():
    """Benchmark entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('dataset', nargs='?', default=str(DEFAULT))
    parser.add_argument('--split', default='train_real')
    parser.add_argument('--repeat', type=int, default=3, help='passes over the frames')
    args = parser.parse_args()
    dataset = BopDataset(args.dataset)
    frames = list(dataset.frames(args.split))
    t = time.process_time()
    annotate(dataset, frames[0], {})  # warm-up: loads and decimates the models
    for f in frames[1:]:
        build_scene_geometry(dataset, f)
    print(f'model loading + first image: {time.process_time() - t:.2f} s (once per process)')
    times = {}
    for _ in range(args.repeat):
        for f in frames:
            annotate(dataset, f, times)
    n_pairs = np.median(times.pop('pairs'))
    total = np.sum([times[k] for k in times], axis=0)
    print(f'{len(frames)} frames x {args.repeat}, median ms per image '
          f'({n_pairs:.0f} ordered pairs per image for trajectories):')
    for name, values in times.items():
        print(f'  {name:14s} {1000 * np.median(values):8.1f}')
    print(f'  {"total":14s} {1000 * np.median(total):8.1f}  -> {1 / np.median(total):.1f} '
          'images/s/core')
    traj_per_pair = np.median(times['trajectory']) / max(n_pairs, 1)
    print(f'  trajectory per pair {1000 * traj_per_pair:.1f} ms')
    print(f'machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, '
          f'Python {platform.python_version()}, load {os.getloadavg()[0]:.2f}')


if __name__ == '__main__':
    main()
