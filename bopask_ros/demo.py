"""``bopask demo``: the simulated robot picks and places objects from language commands.

Starts the sim graph (MuJoCo world as robot and camera, oracle VLM, back-projection, IK
executor -- the nodes and YAML of ``bopask launch pick_place``) in two processes: the sim,
camera and vlm nodes here, the back-projection and executor nodes in a child process
(``graph_process``), so the simulator does not hold the GIL they need; ``--single-process``
runs all of them here. It sends the commands over ``/bopask/command`` like any client,
and judges every episode in physics (``episodes.judge``: the object was lifted and ended
next to the target). Prints one line per episode and the success rate, writes a PNG strip
(per episode: the VLM overlay before, the camera view after), and ends with one JSON line::

    {"episodes": N, "successes": K, "success_rate": K/N,
     "median_command_to_trajectory_ms": ..., "median_backprojection_ms": ...}

Without ``--episodes`` it runs the three scripted commands of ``episodes.DEMO_EPISODES``;
``--episodes N --seed S`` runs N random episodes.
"""

import json
import os
from pathlib import Path
import threading
import time

import numpy as np

DEFAULT_STRIP = 'bopask_demo.png'


def add_arguments(parser):
    """Arguments of ``bopask demo``."""
    parser.add_argument('--episodes', type=int, default=None,
                        help='number of random episodes (default: the 3 scripted commands)')
    parser.add_argument('--seed', type=int, default=0, help='seed of the random episodes')
    parser.add_argument('--replay', type=Path, default=None, metavar='EPISODES_JSON',
                        help='run again the episodes of a run (the episodes.json the bench '
                             'writes)')
    parser.add_argument('--failed-only', action='store_true',
                        help='with --replay: only the episodes that failed')
    parser.add_argument('--out', type=Path, default=Path(DEFAULT_STRIP),
                        help=f'PNG strip of the episodes (default {DEFAULT_STRIP})')
    parser.add_argument('--real-time-factor', type=float, default=2.0,
                        help='physics speed relative to the wall clock (default 2)')
    parser.add_argument('--timeout', type=float, default=120.0,
                        help='seconds allowed per episode (default 120)')
    parser.add_argument('--single-process', action='store_true',
                        help='run every node in this process (default: the back-projection '
                             'and executor nodes in a child process)')
    parser.add_argument('args', nargs='*', metavar='name:=value',
                        help='extra graph arguments, as for `bopask launch pick_place`')


class DemoClient:
    """A plain rclpy node: sends commands, collects status, results and overlays."""

    def __init__(self, context, runtime=None):
        from rclpy.node import Node
        from sensor_msgs.msg import Image
        from std_msgs.msg import String

        from bopask_ros import ros_common as rc
        from bopask_ros.executor_node import RESULT_TOPIC
        self.node = Node('bopask_demo_client', context=context)
        self.lock = threading.Lock()
        self.status, self.results, self.overlays = [], [], []
        self.node.create_subscription(String, rc.STATUS_TOPIC, self._on_status, 100)
        self.node.create_subscription(String, RESULT_TOPIC, self._on_result, 10)
        self.node.create_subscription(Image, rc.OVERLAY_TOPIC, self._on_overlay, 2)
        # With the sim runtime: keep each request's keypoints and depth (re-timing offline).
        self.runtime, self.requests, self.grasp_requests = runtime, [], []
        if runtime is not None:
            self.node.create_subscription(String, rc.KEYPOINTS_TOPIC, self._on_keypoints, 10)
            self.node.create_subscription(String, rc.GRASP_REQUEST_TOPIC,
                                          self._on_grasp_request, 10)
        self.command_pub = self.node.create_publisher(String, rc.COMMAND_TOPIC, 10)
        self.checks = []   # callables run while waiting (raise when a graph process died)

    def _check(self):
        for check in self.checks:
            check()

    def _on_status(self, msg):
        with self.lock:
            self.status.append(msg.data)

    def _on_result(self, msg):
        with self.lock:
            self.results.append(json.loads(msg.data))

    def _on_keypoints(self, msg):
        kp = json.loads(msg.data)
        frame = self.runtime.frame_at(int(kp['stamp_ns']))
        if frame is not None:
            with self.lock:
                self.requests.append((kp, frame))

    def _on_grasp_request(self, msg):
        with self.lock:
            self.grasp_requests.append(json.loads(msg.data))

    def _on_overlay(self, msg):
        from bopask_ros.image_conversion import image_to_array
        with self.lock:
            self.overlays.append(image_to_array(msg))

    def mark(self):
        """Counts of what has arrived so far (to wait for what comes after)."""
        with self.lock:
            return len(self.status), len(self.results), len(self.overlays)

    def send(self, text):
        """Publish a command."""
        from std_msgs.msg import String
        self.command_pub.publish(String(data=text))

    def wait_end(self, mark, timeout, stop_on_refusal=True):
        """Wait for the executor's result (or a refusal) after ``mark``; return (kind, data)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            self._check()
            with self.lock:
                if len(self.results) > mark[1]:
                    return 'result', self.results[mark[1]]
                for line in self.status[mark[0]:] if stop_on_refusal else ():
                    if 'refused' in line and not line.startswith('[executor]'):
                        return 'refused', line
            time.sleep(0.05)
        return 'timeout', f'no result within {timeout:.0f} s'

    def wait_vlm_answer(self, mark, timeout):
        """Wait for the vlm node's answer or refusal after ``mark``; return that line or None."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            self._check()
            for line in self.new_status(mark):
                if line.startswith('[vlm]') and ('answered' in line or 'refused' in line):
                    return line
            time.sleep(0.05)
        return None

    def new_status(self, mark):
        """Status lines since ``mark``."""
        with self.lock:
            return list(self.status[mark[0]:])

    def overlay_since(self, mark):
        """The first overlay image after ``mark`` (or None)."""
        with self.lock:
            return self.overlays[mark[2]] if len(self.overlays) > mark[2] else None


def start_graph(arguments, real_time_factor, single_process=False, ready_timeout=60.0):
    """Start the sim graph plus a DemoClient; return (graph, client).

    Two processes unless ``single_process``: ``graph`` holds the sim, camera and vlm nodes
    and the client; a ``GraphProcess`` child (in ``graph.processes``, stopped by
    ``graph.shutdown()``) the back-projection and executor nodes. Returns once the child's
    nodes are up; raises ``GraphProcessError`` (after cleaning up) when the child dies or
    is not up within ``ready_timeout`` s, and the client's waits raise it if the child dies
    later.
    """
    from bopask_ros.graph import Graph, NODES
    from bopask_ros.graph_process import CHILD_NODES, GraphProcess
    # The simulator renders in software: on a loaded CPU a frame can take longer than a real
    # camera's, so the demo allows older images than the 1 s default.
    args = {'camera_backend': 'sim', 'vlm_backend': 'oracle', 'executor_backend': 'ik',
            'sim_node.real_time_factor': real_time_factor, 'vlm_node.max_image_age_s': 2.5}
    args.update(arguments)
    here = None if single_process else [n for n, _, _ in NODES if n not in CHILD_NODES]
    graph = Graph(args, nodes=here)    # refuses bad arguments before any process starts
    child = None if single_process else GraphProcess(args, CHILD_NODES)
    try:
        if child is not None:
            child.start()          # it imports and builds its nodes while the sim starts
            graph.add_process(child)
        graph.start()
        client = DemoClient(graph.context, graph.runtime)
        graph.add_node(client.node)
        graph.spin_in_thread()
        if child is not None:
            child.wait_ready(client.node, ready_timeout, child_conditions(graph, client))
            client.checks.append(child.check)
        check_domain_alone(client.node, [n for n, _, _ in NODES])
    except BaseException:
        graph.shutdown()           # stops the child too
        raise
    return graph, client


class DomainConflictError(RuntimeError):
    """Another graph runs nodes of the same names on this ROS domain (they would cross-talk)."""


def check_domain_alone(node, names):
    """Raise DomainConflictError when a node name of ``names`` shows more than once.

    Two demos on one ROS domain answer each other's commands and drive each other's arms;
    the domain has to be told apart (``ROS_DOMAIN_ID``).
    """
    from bopask_ros import ros_common as rc
    seen = [name for name, _ in node.get_node_names_and_namespaces()]
    twice = sorted({n for n in seen if n in names and seen.count(n) > 1})
    if twice:
        raise DomainConflictError(
            f'another bopask graph runs on ROS domain {rc.domain_id()} (nodes named '
            f'{", ".join(twice)} twice): stop it, or set ROS_DOMAIN_ID to a free domain '
            f'(0-101) for this one')


def child_conditions(graph, client):
    """What must hold before the first command when the child runs the downstream nodes."""
    from bopask_ros import ros_common as rc
    vlm = graph.nodes['vlm_node']
    busy = [s for s in vlm.subscriptions if s.topic_name == rc.BUSY_TOPIC]

    def subscribed(topic, node_name):
        return lambda: node_name in {i.node_name for i in
                                     client.node.get_subscriptions_info_by_topic(topic)}
    return {
        "the vlm node's /bopask/busy subscription matched with the executor's publisher":
            lambda: all(s.get_publisher_count() > 0 for s in busy),
        f'backprojection_node subscribed to {rc.KEYPOINTS_TOPIC}':
            subscribed(rc.KEYPOINTS_TOPIC, 'backprojection_node'),
        f'executor_node subscribed to {rc.JOINT_STATES_TOPIC}':
            subscribed(rc.JOINT_STATES_TOPIC, 'executor_node'),
    }


def object_positions(runtime):
    """(N, 3) object centre positions, world frame, in object index order."""
    return runtime.call(lambda w: np.array([w.object_pose(o.index)[:3, 3]
                                            for o in w.objects]))


def run_episode(graph, client, episode, timeout=120.0, settle_s=1.0, min_visible=None):
    """Run one Episode; return a dict with the outcome, timings and images.

    With ``min_visible`` (default ``episodes.MIN_VISIBLE``; 0 turns it off) an episode whose
    object or target the camera hardly sees is not run: the dict then has only
    ``command``, ``seed`` and ``skipped`` (the reason).
    """
    from bopask_ros.episodes import footprint_radii, judge, MIN_VISIBLE, visible_fractions
    min_visible = MIN_VISIBLE if min_visible is None else min_visible
    from bopask_ros.sim_node import world_factory
    runtime = graph.runtime
    sim = graph.nodes['sim_node']
    runtime.reset(world_factory(episode.seed, list(episode.obj_ids), (3, 5), sim.T_base_camera))
    ids = runtime.call(lambda w: [o.obj_id for o in w.objects])
    frame = runtime.wait_for_frame(timeout=10.0)
    if min_visible:
        visible = runtime.call(visible_fractions)
        for role, oid in (('object', episode.obj_id), ('target', episode.target_id)):
            if visible[ids.index(oid)] < min_visible:
                return {'command': episode.command, 'seed': episode.seed,
                        'skipped': f'the {role} is {visible[ids.index(oid)]:.0%} visible '
                                   f'from the camera (< {min_visible:.0%})'}
    # Let the camera node publish frames of the new world before commanding.
    time.sleep(0.6)
    start = object_positions(runtime)
    runtime.start_tracking()
    mark = client.mark()
    t0 = time.monotonic()
    client.send(episode.command)
    kind, data = client.wait_end(mark, timeout)
    if kind == 'result' and data.get('outcome') == 'done':
        time.sleep(settle_s)
    outcome = judge(start, object_positions(runtime), runtime.max_heights(),
                    ids.index(episode.obj_id), ids.index(episode.target_id),
                    runtime.call(footprint_radii))
    timing = data.get('timing', {}) if isinstance(data, dict) else {}
    end_frame = runtime.wait_for_frame(after_seq=runtime.latest_frame().seq, timeout=5.0)
    return {
        'command': episode.command, 'seed': episode.seed, 'obj_ids': list(episode.obj_ids),
        'success': outcome.success, 'lifted': outcome.lifted, 'near': outcome.near,
        'rise_m': outcome.rise, 'distance_m': outcome.distance, 'gap_m': outcome.gap,
        'executor': data.get('outcome') if isinstance(data, dict) else kind,
        'reason': (data.get('reason') if isinstance(data, dict) else data) or '',
        'command_to_trajectory_ms': timing.get('command_to_trajectory_ms'),
        'backprojection_ms': timing.get('backprojection_ms'),
        'backprojection_cpu_ms': timing.get('backprojection_cpu_ms'),
        'inference_ms': timing.get('inference_ms'),
        'seconds': time.monotonic() - t0,
        'timing': timing,
        'status': client.new_status(mark),
        'before': client.overlay_since(mark) if client.overlay_since(mark) is not None
        else frame.rgb,
        'after': end_frame.rgb if end_frame is not None else runtime.latest_frame().rgb,
    }


def summary(results):
    """The final JSON object of a run."""
    def median(key):
        vals = [r[key] for r in results if r.get(key) is not None]
        return float(np.median(vals)) if vals else None
    n = len(results)
    k = sum(1 for r in results if r['success'])
    return {'episodes': n, 'successes': k, 'success_rate': k / n if n else 0.0,
            'median_command_to_trajectory_ms': median('command_to_trajectory_ms'),
            'median_backprojection_ms': median('backprojection_ms'),
            'median_backprojection_cpu_ms': median('backprojection_cpu_ms')}


def write_record(results, path):
    """Write the episodes' results without their images as JSON (``--replay`` reads it)."""
    path = Path(path)
    path.write_text(json.dumps([{k: v for k, v in r.items() if k not in ('before', 'after')}
                                for r in results], indent=1))
    return path


def write_strip(results, path, thumb_width=320):
    """Write a PNG: one row per episode, the VLM overlay before and the view after."""
    from PIL import Image, ImageDraw
    rows = []
    for i, r in enumerate(results):
        tiles = []
        for img in (r['before'], r['after']):
            im = Image.fromarray(np.asarray(img)[:, :, :3].astype(np.uint8))
            h = int(im.height * thumb_width / im.width)
            tiles.append(im.resize((thumb_width, h)))
        row = Image.new('RGB', (2 * thumb_width, tiles[0].height + 18), (0, 0, 0))
        row.paste(tiles[0], (0, 18))
        row.paste(tiles[1], (thumb_width, 18))
        verdict = 'SUCCESS' if r['success'] else 'FAIL'
        ImageDraw.Draw(row).text((4, 3), f'{i + 1}. {verdict}: {r["command"]}'[:100],
                                 fill=(0, 255, 0) if r['success'] else (255, 80, 80))
        rows.append(row)
    strip = Image.new('RGB', (2 * thumb_width, sum(r.height for r in rows)))
    y = 0
    for row in rows:
        strip.paste(row, (0, y))
        y += row.height
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    strip.save(path)
    return path


def episodes_for(args):
    """(Episodes to draw from, how many to run): scripted by default, random with --episodes."""
    from bopask_gen.generator.names import load_name_table
    from bopask_ros.episodes import demo_episodes, random_episodes, replay_episodes
    names = load_name_table('ycbv')
    if args.replay is not None:
        try:
            results = json.loads(args.replay.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f'--replay {args.replay}: {exc}') from exc
        replayed = replay_episodes(results, names, args.failed_only)
        if not replayed:
            raise ValueError(f'--replay {args.replay}: no episodes to run')
        return iter(replayed), len(replayed)
    if args.episodes is None:
        scripted = demo_episodes(names)
        return iter(scripted), len(scripted)
    if args.episodes < 1:
        raise ValueError('--episodes must be >= 1')
    return random_episodes(np.random.default_rng(args.seed), names), args.episodes


def run_episodes(graph, client, episodes, count, timeout=120.0, report=None, max_skips=None):
    """Run ``count`` Episodes drawn from the iterator ``episodes``; return (results, skipped).

    Episodes ``run_episode`` skips (object or target hardly visible) are replaced by the next
    draw, at most ``max_skips`` (default ``2 * count``) times. ``report(i, result)`` is called
    after each run or skip (``result['skipped']`` set for a skip).
    """
    max_skips = 2 * count if max_skips is None else max_skips
    results, skipped = [], []
    for episode in episodes:
        if len(results) >= count or len(skipped) > max_skips:
            break
        r = run_episode(graph, client, episode, timeout=timeout)
        (skipped if r.get('skipped') else results).append(r)
        if report is not None:
            report(len(results), r)
    return results, skipped


def run(args):
    """Entry point of ``bopask demo``."""
    from bopask_ros.graph import parse_assignments
    from bopask_ros.graph_process import GraphProcessError
    try:
        episodes, count = episodes_for(args)
        extra = parse_assignments(args.args)
    except ValueError as exc:
        print(f'demo: {exc}')
        return 2
    os.environ.setdefault('MUJOCO_GL', 'egl')
    try:
        graph, client = start_graph(extra, args.real_time_factor, args.single_process)
    except (ValueError, FileNotFoundError) as exc:
        print(f'demo: {exc}')
        return 2
    except (GraphProcessError, DomainConflictError) as exc:
        print(f'demo: {exc}')
        return 1

    def report(i, r):
        if r.get('skipped'):
            print(f'skipped "{r["command"]}": {r["skipped"]}', flush=True)
            return
        verdict = 'success' if r['success'] else 'FAIL'
        lat = r['command_to_trajectory_ms']
        print(f'episode {i}/{count}: {verdict} -- "{r["command"]}" '
              f'(lifted {r["rise_m"] * 100:.1f} cm, ends {r["gap_m"] * 100:.1f} cm '
              f'from the target; executor: {r["executor"]}'
              + (f', {r["reason"]}' if r['reason'] else '')
              + (f'; command->trajectory {lat:.0f} ms' if lat is not None else '') + ')',
              flush=True)
    results, skipped = [], []
    try:
        results, skipped = run_episodes(graph, client, episodes, count, args.timeout, report)
    except GraphProcessError as exc:
        print(f'demo: {exc}')
        return 1
    finally:
        graph.shutdown()
    s = summary(results)
    print(f'success rate: {s["successes"]}/{s["episodes"]} = {s["success_rate"]:.0%}'
          + (f' ({len(skipped)} drawn episodes skipped: object or target hardly visible)'
             if skipped else ''))
    if results:
        print(f'wrote {write_strip(results, args.out)}')
        record = write_record(results, args.out.with_suffix('.json'))
        print(f'wrote {record} (run them again with --replay {record})')
    print(json.dumps(s))
    return 0
