"""Benchmark of the executor's planning (workspace check + every IK) on recorded requests.

Two commands:

- ``record``: runs episodes through the real sim graph (as ``bopask demo``: random with
  ``--episodes N --seed S``, or ``--replay EPISODES_JSON``) and writes every grasp request
  the executor received (the JSON on ``/bopask/grasp_request``), with its episode's command
  and seed and the executor's parameters, to ``--out`` (a JSON list). Slow (a simulation).
- ``plan`` (default): plans the recorded requests offline with ``plan_pick_place`` and the
  executor's ``MinkIK``, from the home pose (where every episode starts), and prints per
  request the outcome (planned tier or refusal) and the time, then the median and p90 of
  the planning time over all requests (refusals included: a refusal is also a wait before
  the answer) and over the planned ones.

Usage::

    python bench/bench_planning.py record --episodes 8 --seed 2 --out /tmp/req.json
    python bench/bench_planning.py plan /tmp/req.json [more.json ...] [--repeats 3]
    # before/after: an earlier planner and solver saved as files, same requests
    python bench/bench_planning.py plan /tmp/req.json --executor old_executor.py
        --ik old_ik.py --dump /tmp/old.npz    # (one line)
    python bench/bench_planning.py plan /tmp/req.json --compare /tmp/old.npz
"""

import argparse
import json
from pathlib import Path
import sys
import time

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_pick_place import machine  # noqa: E402


def record(args):
    """Run episodes in the sim graph; write their grasp requests."""
    import os
    os.environ.setdefault('MUJOCO_GL', 'egl')
    from bopask_gen.generator.names import load_name_table
    from bopask_ros.demo import run_episodes, start_graph
    from bopask_ros.episodes import random_episodes, replay_episodes
    from bopask_ros.graph import declared_parameters
    names = load_name_table('ycbv')
    if args.replay is not None:
        episodes = replay_episodes(json.loads(args.replay.read_text()), names, False)
        count, episodes = len(episodes), iter(episodes)
    else:
        episodes = random_episodes(np.random.default_rng(args.seed), names)
        count = args.episodes
    graph, client = start_graph({}, 2.0, False)
    params = declared_parameters('executor_node', graph.files, graph.overrides)
    records = []

    def report(i, r):
        if r.get('skipped'):
            return
        with client.lock:
            reqs = list(client.grasp_requests)
        print(f'{i}/{count} {r["executor"]} {r["command"]!r} {r["reason"][:100]}', flush=True)
        if len(reqs) > len(records):
            records.append({'command': r['command'], 'seed': r['seed'],
                            'obj_ids': r['obj_ids'], 'executor': r['executor'],
                            'reason': r['reason'], 'request': reqs[-1], 'params': params})
    try:
        run_episodes(graph, client, episodes, count, report=report)
    finally:
        graph.shutdown()
    args.out.write_text(json.dumps(records))
    print(f'wrote {len(records)} grasp requests to {args.out}')
    return 0


def load_module(path, name):
    """Import a Python file as a module (an earlier copy of the planner or solver)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def plan_request(rec, ik, q_start=None, executor=None):
    """Plan one recorded request; return (steps or the refusal exception, seconds)."""
    from bopask_gen.sim import robot
    from bopask_ros import executor as default_executor
    from bopask_ros.executor_node import executor_params, request_plan_arguments
    executor = executor or default_executor
    plan_pick_place, IKError, WorkspaceError = (
        executor.plan_pick_place, executor.IKError, executor.WorkspaceError)
    params = executor_params(rec['params'])
    plan_args = request_plan_arguments(rec['request'])
    q_start = robot.HOME_Q if q_start is None else q_start
    t0 = time.perf_counter()
    try:
        out = plan_pick_place(q_start=q_start, ik=ik, params=params, skipped=[], **plan_args)
    except (IKError, WorkspaceError) as exc:
        out = exc
    return out, time.perf_counter() - t0


def plan(args):
    """Plan recorded requests offline; print times."""
    from bopask_ros.executor_node import MinkIK
    records = [r for path in args.requests for r in json.loads(Path(path).read_text())]
    ik = MinkIK()
    executor = None
    if args.executor is not None:
        executor = load_module(args.executor, 'executor_under_test')
    if args.ik is not None:
        # The node's adapter around another solver (without ``reachable`` if it has none).
        ik._ik = load_module(args.ik, 'ik_under_test').PandaIK()
        if not hasattr(ik._ik, 'reachable'):
            ik.reachable = None
    print(f'machine: {machine()}')
    print(f'planner {args.executor or "bopask_ros.executor"}, solver '
          f'{args.ik or "bopask_gen.sim.ik"}')
    all_ms, ok_ms, dump = [], [], {}
    for i, rec in enumerate(records):
        times = []
        for _ in range(args.repeats):
            out, dt = plan_request(rec, ik, executor=executor)
            times.append(dt * 1000.0)
        if not isinstance(out, Exception):
            dump[f'r{i}'] = np.concatenate([s.positions for s in out if s.kind == 'arm'])
        ms = float(np.median(times))
        all_ms.append(ms)
        if isinstance(out, Exception):
            what = f'REFUSED {str(out)[:110]}'
        else:
            ok_ms.append(ms)
            lift = [s for s in out if s.name == 'lift'][0].targets[-1][2, 3]
            what = f'planned (lift to z {lift:.3f} m)'
        print(f'{i:3d} {ms:7.1f} ms  {what}  -- {rec["command"][:60]!r}', flush=True)
    for label, ms in (('all requests', all_ms), ('planned', ok_ms)):
        if ms:
            print(f'planning time, {label} ({len(ms)}): median {np.median(ms):.1f} ms, '
                  f'p90 {np.percentile(ms, 90):.1f} ms, max {np.max(ms):.1f} ms, '
                  f'total {np.sum(ms):.0f} ms')
    print(f'planned {len(ok_ms)}/{len(all_ms)}')
    if args.dump is not None:
        np.savez(args.dump, **dump)
        print(f'joint paths of the planned requests: {args.dump}')
    if args.compare is not None:
        other = np.load(args.compare)
        same = [k for k in dump if k in other and other[k].shape == dump[k].shape
                and np.allclose(other[k], dump[k], atol=1e-9)]
        differ = sorted((set(dump) | set(other.files)) - set(same), key=lambda k: int(k[1:]))
        print(f'compared with {args.compare}: {len(same)} joint paths identical, differing '
              f'or planned in one only: {differ}')
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest='cmd')
    rec = sub.add_parser('record', help='run sim episodes, write their grasp requests')
    rec.add_argument('--episodes', type=int, default=8)
    rec.add_argument('--seed', type=int, default=0)
    rec.add_argument('--replay', type=Path, default=None, metavar='EPISODES_JSON')
    rec.add_argument('--out', type=Path, required=True)
    pl = sub.add_parser('plan', help='plan recorded requests offline (default)')
    pl.add_argument('requests', nargs='+', type=Path)
    pl.add_argument('--repeats', type=int, default=3, help='plans per request (median)')
    pl.add_argument('--executor', type=Path, default=None,
                    help='plan with this copy of bopask_ros/executor.py (e.g. an older one)')
    pl.add_argument('--ik', type=Path, default=None,
                    help='solve with this copy of bopask_gen/sim/ik.py')
    pl.add_argument('--dump', type=Path, default=None,
                    help='write the planned joint paths (.npz, one array per request)')
    pl.add_argument('--compare', type=Path, default=None,
                    help='compare the joint paths with a --dump of another run')
    argv = sys.argv[1:]
    if argv and argv[0] not in ('record', 'plan', '-h', '--help'):
        argv = ['plan'] + argv
    args = parser.parse_args(argv)
    if args.cmd == 'record':
        return record(args)
    if args.cmd == 'plan':
        return plan(args)
    parser.print_help()
    return 2


if __name__ == '__main__':
    sys.exit(main())
