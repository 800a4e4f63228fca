"""How far off a grasp lands for a given camera extrinsic error (``bopask calib-check``).

Renders the MuJoCo world with the camera at config/extrinsics.yaml, measures known object
top points through the depth image (as calib-check does), then evaluates a grid of
deliberate translation and rotation errors of the extrinsic: the mean / max residual (what
a back-projected grasp would be off by) and the error calib-check recovers.

    .venv/bin/python bench/calib_sensitivity.py [--frames 3]
"""

import argparse
import json
import platform
import time

import numpy as np

from bopask_ros import calib_check as cc
from bopask_ros.ros_common import config_path


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--frames', type=int, default=3)
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args()
    extrinsic = cc.load_extrinsic(config_path(cc.DEFAULT_EXTRINSICS))
    t0 = time.perf_counter()
    frames = cc.sim_frames(extrinsic.T_base_camera, frames=args.frames, seed=args.seed)
    pc, pb = cc.observations_from_frames(frames)
    t_obs = time.perf_counter() - t0
    print(f'machine: {platform.processor() or platform.machine()}, {platform.python_version()}'
          f'; {len(pc)} known points from {args.frames} simulated frames in {t_obs:.1f} s')
    print(f'{"perturbation":>34} | {"residual mean":>13} {"max":>8} | '
          f'{"recovered pos":>13} {"rot":>8}')
    rows = []
    grid = [((0, 0, 0), (0, 0, 0))]
    grid += [((d, 0, 0), (0, 0, 0)) for d in (0.005, 0.01, 0.02, 0.05)]
    grid += [((0, 0, 0), (0, a, 0)) for a in (0.5, 1.0, 2.0, 5.0)]
    grid += [((0, 0, 0), (0, 0, a)) for a in (0.5, 1.0, 2.0, 5.0)]
    for xyz, rpy in grid:
        t = time.perf_counter()
        report = cc.evaluate(cc.perturb(extrinsic.T_base_camera, xyz, rpy), pc, pb)
        ms = 1000 * (time.perf_counter() - t)
        label = f'xyz {np.round(xyz, 3).tolist()} rpy {list(rpy)}'
        print(f'{label:>34} | {1000 * report["residual_mean_m"]:10.1f} mm '
              f'{1000 * report["residual_max_m"]:5.1f} mm | '
              f'{1000 * report["translation_error_m"]:10.1f} mm '
              f'{report["rotation_error_deg"]:5.2f} deg  ({ms:.1f} ms)')
        rows.append({'xyz': list(xyz), 'rpy_deg': list(rpy), **{
            k: report[k] for k in ('residual_mean_m', 'residual_max_m', 'translation_error_m',
                                   'rotation_error_deg')}})
    print(json.dumps({'points': int(len(pc)), 'rows': rows}))


if __name__ == '__main__':
    main()
