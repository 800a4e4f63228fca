"""Record the demo scenes to a bag, replay it with the oracle and with perturbed oracles.

Records the three ``episodes.DEMO_EPISODES`` commands in the sim graph (sim camera with
ground truth, oracle vlm, back-projection; no executor, the arm stays home), then replays the
bag through freshly started vlm + backprojection nodes: once with the oracle, then with the
oracle's keypoints shifted and rotated. Prints per-variant medians of the grasp-centre,
finger-axis and path errors, the refusals, the playback lateness and the wall time, plus
the machine. Usage::

    .venv/bin/python bench/bench_replay.py [--out DIR] [--rate R]
"""

import argparse
import json
import os
from pathlib import Path
import platform
import shutil
import tempfile
import time


def record(bag, domain_id):
    """Record the demo commands (one scene each) into ``bag``; return the message counts."""
    from bopask_ros.bag_record import Recorder
    from bopask_ros.demo import DemoClient
    from bopask_ros.episodes import DEMO_EPISODES
    from bopask_ros.graph import Graph
    from bopask_ros.sim_node import world_factory
    os.environ['ROS_DOMAIN_ID'] = str(domain_id)
    graph = Graph({'camera_backend': 'sim', 'vlm_backend': 'oracle'})
    graph.names.remove('executor_node')
    graph.start()
    try:
        client = DemoClient(graph.context)
        graph.add_node(client.node)
        graph.spin_in_thread()
        recorder = None
        for seed, obj_ids, command in DEMO_EPISODES:
            graph.runtime.reset(world_factory(seed, list(obj_ids), (3, 5),
                                              graph.nodes['sim_node'].T_base_camera))
            graph.runtime.wait_for_frame(timeout=10.0)
            if recorder is None:
                recorder = Recorder(graph.context, bag).start()
            time.sleep(1.5)
            mark = client.mark()
            client.send(command)
            print('  live:', client.wait_vlm_answer(mark, timeout=90.0), flush=True)
            time.sleep(0.5)
        return recorder.stop()
    finally:
        graph.shutdown()


def replay_variant(bag, domain_id, rate, offset_px=(0, 0), rotate_deg=0.0):
    """Replay ``bag`` once; return (report, wall seconds)."""
    import rclpy

    from bopask_ros.bag_replay import replay
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain_id)
    t0 = time.monotonic()
    try:
        report = replay(bag, context, rate=rate, graph_args={'__start__': True},
                        offset_px=offset_px, rotate_deg=rotate_deg, timeout=90.0)
    finally:
        rclpy.try_shutdown(context=context)
    return report, time.monotonic() - t0


def main():
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--out', type=Path, default=None, help='keep the bag and reports here')
    parser.add_argument('--rate', type=float, default=1.0, help='replay rate (default 1)')
    args = parser.parse_args()
    domain_id = 20 + (os.getpid() + 5) % 70
    work = Path(tempfile.mkdtemp(prefix='bench_replay_'))
    bag = (args.out or work) / 'demo_session'
    if bag.exists():
        shutil.rmtree(bag)
    bag.parent.mkdir(parents=True, exist_ok=True)
    print(f'machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, '
          f'python {platform.python_version()}')
    t0 = time.monotonic()
    counts = record(bag, domain_id)
    print(f'recorded {bag} in {time.monotonic() - t0:.1f} s: {counts}')
    variants = [('oracle', (0, 0), 0.0), ('offset 10 px', (10, 0), 0.0),
                ('rotated 30 deg', (0, 0), 30.0), ('offset 25 px + rotated 30 deg', (25, 0),
                                                   30.0)]
    results = {}
    from bopask_ros.bag_replay import write_report
    for name, offset, rotate in variants:
        report, wall = replay_variant(bag, domain_id, args.rate, offset, rotate)
        s = report['summary']
        row = {k: (s[k]['median'] if isinstance(s.get(k), dict) else s.get(k))
               for k in ('grasp_centre_error_m', 'finger_axis_error_deg', 'path_error_m',
                         'grasp_centre_error_gt_m', 'finger_axis_error_gt_deg', 'scored',
                         'refusals', 'parse_failures')}
        row.update(report.get('timing', {}), wall_s=wall)
        results[name] = row
        if args.out:
            write_report(report, args.out / f'report_{name.replace(" ", "_")}.md')
        print(f'{name:32s} ' + ', '.join(
            f'{k}={v:.4g}' if isinstance(v, float) else f'{k}={v}' for k, v in row.items()),
            flush=True)
    print(json.dumps(results))
    if args.out is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == '__main__':
    main()
