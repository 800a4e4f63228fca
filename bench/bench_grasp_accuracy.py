"""How far the back-projected grasp is from the generator's own grasp (ground truth).

For random sim episodes (the demo's draws), the oracle's grasps of the object to pick (the
generator's ``top_grasps``, keypoints projected exactly) are lifted back with
``backprojection.grasp_pose`` from the rendered depth, and compared with the generator's TCP
pose in the robot base frame:

- ``across``: the TCP's error across the closing line (horizontal): a parallel gripper
  closing off the object's axis squeezes it out -- the error that matters most;
- ``along``: along the closing line (the closing fingers centre the object);
- ``height``: vertical; ``approach``: the angle between the approach axes.

No physics, no ROS: the same code the node runs, against the same ground truth the oracle
answers from. Grasps whose centre keypoint the camera does not see on the object are left
out, as the oracle leaves them out.

Usage: ``python bench/bench_grasp_accuracy.py [--episodes 30] [--seed 0] [name=value ...]``
(``BackprojectionParams`` overrides, e.g. ``top_radius=0.05``).
"""

import argparse
import os
import time

import numpy as np


def grasp_errors(T_est, T_gt):
    """(across, along, height, approach_deg) of an estimated TCP pose against the truth."""
    d = T_est[:3, 3] - T_gt[:3, 3]
    y = T_gt[:3, 1].copy()
    y[2] = 0.0
    y /= max(np.linalg.norm(y), 1e-9)
    across = np.array([-y[1], y[0], 0.0])
    angle = np.degrees(np.arccos(np.clip(T_est[:3, 2] @ T_gt[:3, 2], -1.0, 1.0)))
    return abs(d @ across), abs(d @ y), d[2], angle


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--episodes', type=int, default=30)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--grasps', type=int, default=5, help='grasps per episode')
    parser.add_argument('overrides', nargs='*', metavar='name=value')
    args = parser.parse_args()
    os.environ.setdefault('MUJOCO_GL', 'egl')
    from bopask_gen.core.gripper import approach_tilt_deg
    from bopask_gen.core.transforms import invert_transform, transform_from_xyz_quat_xyzw
    from bopask_gen.generator.grasps import top_grasps
    from bopask_gen.generator.names import load_name_table
    from bopask_gen.generator.scene import mask_visib
    from bopask_ros import ros_common as rc
    from bopask_ros.backprojection import BackprojectionError, BackprojectionParams, grasp_pose
    from bopask_ros.episodes import random_episodes
    from bopask_ros.image_conversion import metres_to_depth_mm
    from bopask_ros.sim_node import world_factory
    from bopask_ros.sim_runtime import SimRuntime
    from bopask_ros.vlm_oracle import OracleBackend

    params = BackprojectionParams(**{k: float(v) for k, v in
                                     (o.split('=', 1) for o in args.overrides)})
    p = rc.load_node_parameters(rc.config_path('extrinsics.yaml'), 'sim_node')
    T_bc = transform_from_xyz_quat_xyzw(p['extrinsic.translation'], p['extrinsic.rotation_xyzw'])
    episodes = random_episodes(np.random.default_rng(args.seed), load_name_table('ycbv'))
    rows, refused, t0 = [], 0, time.perf_counter()
    for i, ep in zip(range(args.episodes), episodes):
        runtime = SimRuntime(world_factory(ep.seed, list(ep.obj_ids), (3, 5), T_bc), 4.0, 5.0)
        try:
            frame = runtime.wait_for_frame(timeout=30.0)
            oracle = OracleBackend(runtime, workdir=f'/tmp/bench_grasp_accuracy_{os.getpid()}')
            scene = oracle.scene_for(frame)
            obj = scene.object_by_gt([o.gt_index for o in scene.objects
                                      if o.obj_id == ep.obj_id][0])
            grasps = top_grasps(scene, obj, np.random.default_rng(i), k=args.grasps)
            # As the oracle: only grasps whose centre the camera sees on the object.
            visible = mask_visib(scene, obj)
            h, w = visible.shape
            grasps = [g for g in grasps if visible[
                min(max(int(round(g.keypoints_px[0, 1])), 0), h - 1),
                min(max(int(round(g.keypoints_px[0, 0])), 0), w - 1)]]
            T_base_cam_gt = invert_transform(frame.T_world_camera @ invert_transform(T_bc)) \
                @ frame.T_world_camera
            depth = metres_to_depth_mm(frame.depth_m).astype(np.float32) / 1000.0
            for g in grasps:
                T_gt = T_base_cam_gt @ g.T_cam
                try:
                    T_est, *_ = grasp_pose(g.keypoints_px, depth, frame.K, T_bc, params)
                except BackprojectionError:
                    refused += 1
                    continue
                # The hand is symmetric about its approach: compare with the nearer version.
                rows.append((ep.obj_id,) + grasp_errors(T_est, T_gt)
                            + (approach_tilt_deg(T_gt), approach_tilt_deg(T_est), i))
        finally:
            runtime.close()
        print(f'{i + 1}/{args.episodes} episodes, {len(rows)} grasps', end='\r', flush=True)
    rows = np.array(rows)
    print(f'\n{len(rows)} grasps of {args.episodes} episodes ({refused} refused), '
          f'{time.perf_counter() - t0:.0f} s; params {args.overrides or "defaults"}')
    print(f'height error (estimate - truth) median {np.median(rows[:, 3]) * 1000:+.1f} mm')
    for name, col in (('across the closing line', 1), ('along it', 2), ('height', 3)):
        v = np.abs(rows[:, col]) * 1000.0
        print(f'{name:24s} median {np.median(v):5.1f} mm, p90 {np.percentile(v, 90):5.1f} mm, '
              f'> 10 mm: {np.mean(v > 10):.0%}')
    v = rows[:, 4]
    print(f'{"approach angle":24s} median {np.median(v):5.1f} deg, p90 '
          f'{np.percentile(v, 90):5.1f} deg')
    for name, sel in (('top-down (tilt <= 10 deg)', rows[:, 5] <= 10),
                      ('tilted (tilt > 10 deg)', rows[:, 5] > 10)):
        if np.any(sel):
            print(f'{name}: {sel.sum()} grasps, across median '
                  f'{np.median(rows[sel, 1]) * 1000:.1f} mm, p90 '
                  f'{np.percentile(rows[sel, 1], 90) * 1000:.1f} mm; along median '
                  f'{np.median(rows[sel, 2]) * 1000:.1f} mm; height median '
                  f'{np.median(np.abs(rows[sel, 3])) * 1000:.1f} mm')
    worst = np.argsort(-rows[:, 1])[:5]
    print('worst across: ' + '; '.join(
        f'object {int(r[0])} (episode {int(r[7]) + 1}) {r[1] * 1000:.0f} mm, tilt {r[5]:.0f} '
        f'deg (estimated {r[6]:.0f})' for r in rows[worst]))
    for oid in np.unique(rows[:, 0]):
        sel = rows[:, 0] == oid
        print(f'  object {int(oid):2d}: {sel.sum():3d} grasps, across median '
              f'{np.median(rows[sel, 1]) * 1000:5.1f} mm, p90 '
              f'{np.percentile(rows[sel, 1], 90) * 1000:5.1f} mm')


if __name__ == '__main__':
    main()
