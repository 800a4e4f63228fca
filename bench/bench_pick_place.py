"""Benchmark of the simulated pick and place from language commands (issue 5 targets).

Runs N random episodes (default 20) through the real graph -- sim camera, oracle VLM,
back-projection, IK executor, MuJoCo physics -- exactly as ``bopask demo --episodes N``, and
reports:

- success rate, judged in physics (object lifted >= 5 cm, its footprint ends within 10 cm of
  the target's); target >= 95 %. Drawn episodes whose object or target is less than 15 %
  visible from the camera are skipped, counted and replaced (``demo.run_episodes``);
- latency from the command to the first JointTrajectory, minus the model's inference time
  (the oracle's time, which stands in for the model); target < 100 ms;
- back-projection time per request (the node's lift of the keypoints to the grasp pose and
  waypoints); target < 1 ms. The search for a place next to the target (footprints from
  the depth image) follows it in the node and is timed apart.

The graph runs as ``bopask demo`` runs it: two processes (sim, camera and vlm nodes here;
back-projection and executor nodes in a child process), or all in this process with
``--single-process`` (to compare).

Usage: ``python bench/bench_pick_place.py [--episodes 20] [--seed 0] [--out DIR]
[--single-process]``. The last line is the JSON summary of ``bopask demo``.
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


def retime_backprojection(graph, requests, repeats=50):
    """Median ms of the back-projection and of the place search per recorded request.

    Run alone (after shutdown): ``lift_grasp_and_waypoints`` (the back-projection proper)
    and ``locate_place`` (target and free spot from the depth image). Parameters and the
    static extrinsic as the node builds them from the graph's YAML files and overrides (the
    node may have run in another process). Returns (lift times, place times).
    """
    from bopask_ros.backprojection import (
        BackprojectionError,
        lift_grasp_and_waypoints,
        locate_place,
    )
    from bopask_ros.backprojection_node import backprojection_params, static_extrinsic
    from bopask_ros.graph import declared_parameters
    from bopask_ros.image_conversion import metres_to_depth_mm
    p = declared_parameters('backprojection_node', graph.files, graph.overrides)
    params, T_static = backprojection_params(p), static_extrinsic(p)
    lift_times, place_times = [], []
    for kp, frame in requests:
        depth = metres_to_depth_mm(frame.depth_m).astype(np.float32) / 1000.0  # as published
        grasp, wps = np.asarray(kp['grasp_px'], float), np.asarray(kp['waypoints_px'], float)
        lift, place = [], []
        for _ in range(repeats):
            try:
                t0 = time.perf_counter()
                target = lift_grasp_and_waypoints(grasp, wps, depth, frame.K, T_static, params)
                t1 = time.perf_counter()
                locate_place(target, wps, depth, frame.K, T_static, params)
                t2 = time.perf_counter()
            except BackprojectionError:
                break
            lift.append((t1 - t0) * 1000.0)
            place.append((t2 - t1) * 1000.0)
        if lift:
            lift_times.append(float(np.median(lift)))
            place_times.append(float(np.median(place)))
    return lift_times, place_times


def retime_planning(graph, requests, repeats=5):
    """Median time of the executor's plan (workspace check + all IK) per recorded request.

    Parameters and IK as the executor node builds them from the graph's YAML and overrides.
    """
    from bopask_gen.sim import robot
    from bopask_ros.executor import IKError, plan_pick_place, WorkspaceError
    from bopask_ros.executor_node import executor_params, MinkIK, request_plan_arguments
    from bopask_ros.graph import declared_parameters
    params = executor_params(declared_parameters('executor_node', graph.files,
                                                 graph.overrides))
    ik = MinkIK()
    times = []
    for req in requests:
        plan_args = request_plan_arguments(req)
        run = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            try:
                plan_pick_place(q_start=robot.HOME_Q, ik=ik, params=params, **plan_args)
            except (IKError, WorkspaceError):
                break
            run.append((time.perf_counter() - t0) * 1000.0)
        if run:
            times.append(float(np.median(run)))
    return times


def stage_breakdown(results):
    """Median ms of each stage between the command and the first trajectory."""
    stages = {}
    for r in results:
        t = r.get('timing') or {}
        if 'keypoints_sent' not in t or 'request_received' not in t:
            continue
        for name, value in (
                ('vlm parse+publish', (t['keypoints_sent'] - t['command_time']) * 1000.0
                 - t['inference_ms']),
                ('vlm->backprojection', (t['keypoints_received'] - t['keypoints_sent']) * 1e3),
                ('backprojection node', (t['request_sent'] - t['keypoints_received']) * 1e3),
                ('->executor', (t['request_received'] - t['request_sent']) * 1e3),
                ('plan', t['plan_ms'])):
            stages.setdefault(name, []).append(value)
    return {k: float(np.median(v)) for k, v in stages.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--episodes', type=int, default=20)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--real-time-factor', type=float, default=2.0)
    parser.add_argument('--out', type=Path, default=Path('bench_pick_place_out'))
    parser.add_argument('--single-process', action='store_true',
                        help='every node in this process (default: back-projection and '
                             'executor in a child process, as bopask demo)')
    args = parser.parse_args()
    if args.episodes < 1:
        parser.error('--episodes must be >= 1')

    from bopask_gen.generator.names import load_name_table
    from bopask_ros.demo import run_episodes, start_graph, summary, write_record, write_strip
    from bopask_ros.episodes import random_episodes
    names = load_name_table('ycbv')
    episodes = random_episodes(np.random.default_rng(args.seed), names)
    print(f'machine: {machine()}', flush=True)
    print('graph: ' + ('one process' if args.single_process else
                       'two processes (back-projection and executor nodes in a child)'),
          flush=True)
    t0 = time.perf_counter()
    graph, client = start_graph({}, args.real_time_factor, args.single_process)

    def report(i, r):
        if r.get('skipped'):
            print(f'   skip {r["command"]!r}: {r["skipped"]}', flush=True)
            return
        lat, bp = r['command_to_trajectory_ms'], r['backprojection_ms']
        print(f'{i:2d}/{args.episodes} {"ok  " if r["success"] else "FAIL"} '
              f'{r["command"]!r}: rise {r["rise_m"] * 100:.1f} cm, end gap '
              f'{r["gap_m"] * 100:.1f} cm, executor {r["executor"]}'
              + (f' ({r["reason"][:120]})' if r['reason'] else '')
              + (f', cmd->traj {lat:.1f} ms' if lat is not None else '')
              + (f', backproj {bp:.3f} ms ({r["backprojection_cpu_ms"]:.3f} CPU)'
                 if bp is not None else '')
              + (f', oracle {r["inference_ms"]:.0f} ms' if r['inference_ms'] else ''),
              flush=True)
    try:
        results, skipped = run_episodes(graph, client, episodes, args.episodes, report=report)
    finally:
        graph.shutdown()
    offline, offline_place = retime_backprojection(graph, client.requests)
    offline_plan = retime_planning(graph, client.grasp_requests)
    s = summary(results)
    s['graph_processes'] = 1 if args.single_process else 2
    s['skipped_not_visible'] = len(skipped)
    lats = [r['command_to_trajectory_ms'] for r in results if r['command_to_trajectory_ms']]
    bps = [r['backprojection_ms'] for r in results if r['backprojection_ms']]
    cpus = [r['backprojection_cpu_ms'] for r in results if r['backprojection_cpu_ms']]
    places = [r['timing']['place_search_ms'] for r in results
              if r.get('timing', {}).get('place_search_ms') is not None]
    print(f'success rate {s["successes"]}/{s["episodes"]} = {s["success_rate"]:.0%} '
          f'(target >= 95%); {len(skipped)} drawn episodes skipped (object or target less '
          f'than 15 % visible: no command about what the camera does not see)')
    if lats:
        print(f'command -> first JointTrajectory, excluding inference: median '
              f'{np.median(lats):.1f} ms, p90 {np.percentile(lats, 90):.1f} ms, max '
              f'{np.max(lats):.1f} ms (target < 100 ms)')
    if bps:
        print(f'back-projection per request: median {np.median(bps):.3f} ms wall, p90 '
              f'{np.percentile(bps, 90):.3f} ms; thread CPU median {np.median(cpus):.3f} ms '
              f'(target < 1 ms); then the place search: median {np.median(places):.3f} ms')
    if offline:
        print(f'back-projection re-timed offline on the {len(offline)} recorded requests '
              f'(same depth, K, keypoints; nothing else running in this process): median '
              f'{np.median(offline):.3f} ms, p90 {np.percentile(offline, 90):.3f} ms; place '
              f'search median {np.median(offline_place):.3f} ms, p90 '
              f'{np.percentile(offline_place, 90):.3f} ms')
        s['median_backprojection_offline_ms'] = float(np.median(offline))
        s['median_place_search_offline_ms'] = float(np.median(offline_place))
    hops = stage_breakdown(results)
    if hops:
        print('latency stages (median ms): ' + ', '.join(f'{k} {v:.1f}' for k, v in hops.items()))
    if offline_plan:
        print(f'executor planning (workspace check + all IK) re-timed offline on the '
              f'{len(offline_plan)} recorded grasp requests: median '
              f'{np.median(offline_plan):.1f} ms, p90 {np.percentile(offline_plan, 90):.1f} ms')
        s['median_planning_offline_ms'] = float(np.median(offline_plan))
    args.out.mkdir(parents=True, exist_ok=True)
    print(f'strip: {write_strip(results, args.out / "episodes.png")}; total '
          f'{time.perf_counter() - t0:.0f} s')
    write_record(results, args.out / 'episodes.json')
    print(json.dumps(s))


if __name__ == '__main__':
    main()
