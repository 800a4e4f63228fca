"""Benchmark of ``bopask-gen build``: images/s/core and QAs/s on the real YCB-V subset.

Runs the whole pipeline (all six tasks unless --tasks says otherwise) in this process with
one worker, several times; the first run is cold (models loaded and decimated, modules
imported), the others are warm like a long build's steady state. Prints medians of the warm
runs, the per-stage time per image (which annotator costs what), the machine's core count
and load. ``--workers N`` measures the process pool instead (images/s divided by N).

    .venv/bin/python bench/bench_build.py [--repeats 3] [--workers 1] [--tasks ...]
"""

import argparse
import os
from pathlib import Path
import platform
import statistics
import tempfile
import time
import warnings

from bopask_gen.generator.build import build, BuildConfig
from bopask_gen.generator.questions import TASKS

DEFAULT_DATA = Path(__file__).resolve().parents[2] / 'shared' / 'data' / 'ycbv_real_subset'


def one_run(args, out_dir):
    config = BuildConfig(dataset_dir=str(args.data), split=args.split, out_dir=str(out_dir),
                         tasks=tuple(args.tasks.split(',')), seed=args.seed)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        summary = build(config, workers=args.workers, progress=False)
    return summary, time.perf_counter() - t0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--data', type=Path, default=DEFAULT_DATA)
    parser.add_argument('--split', default='train_real')
    parser.add_argument('--tasks', default=','.join(TASKS))
    parser.add_argument('--repeats', type=int, default=3, help='warm runs (after 1 cold run)')
    parser.add_argument('--workers', type=int, default=1)
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args()

    print(f'machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, '
          f'load average {os.getloadavg()[0]:.2f} (other jobs share these cores)')
    print(f'data: {args.data} split {args.split}; tasks {args.tasks}; workers {args.workers}')
    runs = []
    with tempfile.TemporaryDirectory(prefix='bench_build_') as tmp:
        for i in range(args.repeats + 1):
            summary, seconds = one_run(args, Path(tmp) / f'run{i}')
            runs.append((summary, seconds))
            kind = 'cold' if i == 0 else 'warm'
            print(f'  run {i} ({kind}): {summary["images"]} images, {summary["qas"]} QAs in '
                  f'{seconds:.2f} s')
    warm = runs[1:] or runs
    n_images = warm[0][0]['images']
    img_s = statistics.median(s['images'] / sec for s, sec in warm)
    qa_s = statistics.median(s['qas'] / sec for s, sec in warm)
    print(f'median (warm): {img_s:.2f} images/s = {img_s / args.workers:.2f} images/s/core, '
          f'{qa_s:.1f} QAs/s; cold run {runs[0][0]["images"] / runs[0][1]:.2f} images/s')
    print(f'QAs per task: {warm[0][0]["counts"]}')
    print('median seconds per image by stage (warm):')
    stages = sorted({k for s, _ in warm for k in s['stage_seconds']})
    per_stage = {k: statistics.median(s['stage_seconds'].get(k, 0.0) / n_images
                                      for s, _ in warm) for k in stages}
    total = sum(per_stage.values())  # the shares below are of the time inside the stages
    for k, v in sorted(per_stage.items(), key=lambda kv: -kv[1]):
        print(f'  {k:14s} {v * 1000:8.1f} ms  ({100 * v / total:4.1f} %)')
    other = statistics.median((sec - sum(s['stage_seconds'].values())) / n_images
                              for s, sec in warm)
    print(f'  {"(other)":14s} {1000 * other:8.1f} ms  (imports, image copy, shard and '
          'summary writing)')
    target = 4.0
    verdict = 'meets' if img_s / args.workers >= target else 'misses'
    print(f'target >= {target} images/s/core: {verdict}')


if __name__ == '__main__':
    main()
