"""``bopask replay BAG``: play a recorded session into the graph and score what it answers.

Publishes every message of a rosbag2 directory (``bopask record`` or ``ros2 bag record``;
MCAP or sqlite3) on its topic with the original timing, scaled by ``--rate``. The CDR bytes
are published unchanged, so header stamps are the recorded ones; ``/clock`` follows the
recorded log time (like ``ros2 bag play --clock``), so nodes started with
``use_sim_time:=true`` judge image age against the recording, not the wall clock. Topics
whose message type is not importable here are skipped with a warning.

While playing it collects ``/bopask/vlm/keypoints``, ``/bopask/grasp_request`` and
``/bopask/status``; afterwards it scores every recorded command against the recorded ground
truth (``/bopask/sim/ground_truth``, see ``ground_truth.py``): grasp-centre error (m),
finger-axis angle error (deg), waypoint path error (m), parse failures and refusals (see
``replay_scoring.py`` for the definitions and the two references). Writes a markdown report
(``--report``) and the same data as JSON beside it.

The graph:

- ``--graph``: start the vlm and backprojection nodes in this process (config/pick_place.yaml
  plus ``name:=value`` arguments as for ``bopask launch``; ``use_sim_time`` on). With
  ``--vlm-backend oracle`` (default) the oracle answers from the recorded ground truth and
  images (``replay_oracle.GroundTruthRuntime``, a stand-in for the live simulator), seeded
  per command; ``--oracle-offset-px DU DV`` / ``--oracle-rotate-deg A`` make it
  deliberately wrong. ``--vlm-backend transformers model_path:=DIR`` evaluates a model.
- without ``--graph``: a graph must already run on this ROS_DOMAIN_ID without a camera of its
  own (e.g. the vlm and backprojection nodes of a ROS install with ``use_sim_time:=true``).

A truncated or corrupt bag stops the playback with an error naming the bag; the report of
what was played is still written (exit code 1).
"""

import json
from pathlib import Path
import threading
import time

import numpy as np

from bopask_ros import replay_scoring as scoring
from bopask_ros import ros_common as rc
from bopask_ros.bag_io import BagError, BagReader, deserialize, message_class
from bopask_ros.ground_truth import GROUND_TRUTH_TOPIC, GroundTruthError, parse_ground_truth

DEFAULT_REPORT = 'replay_report.md'
CLOCK_TOPIC = '/clock'


def add_arguments(parser):
    """Arguments of ``bopask replay``."""
    parser.add_argument('bag', metavar='BAG', help='rosbag2 directory to replay')
    parser.add_argument('--rate', type=float, default=1.0,
                        help='playback speed factor (default 1: recorded timing)')
    parser.add_argument('--report', type=Path, default=Path(DEFAULT_REPORT),
                        help=f'markdown report (default {DEFAULT_REPORT}; JSON beside it)')
    parser.add_argument('--graph', action='store_true',
                        help='start the vlm and backprojection nodes in this process')
    parser.add_argument('--vlm-backend', default='oracle',
                        choices=('oracle', 'transformers', 'scripted'),
                        help='vlm backend with --graph (default oracle)')
    parser.add_argument('--oracle-offset-px', type=float, nargs=2, default=(0.0, 0.0),
                        metavar=('DU', 'DV'), help='shift every oracle keypoint (perturbation)')
    parser.add_argument('--oracle-rotate-deg', type=float, default=0.0,
                        help='rotate the oracle grasp keypoints about their centre')
    parser.add_argument('--timeout', type=float, default=60.0,
                        help='seconds to wait for the answers after the last message')
    parser.add_argument('--no-clock', action='store_true', help='do not publish /clock')
    parser.add_argument('args', nargs='*', metavar='name:=value',
                        help='graph arguments with --graph (as for bopask launch pick_place)')


class Collector:
    """Subscribes to what the vlm and backprojection nodes publish."""

    def __init__(self, node):
        from std_msgs.msg import String
        self.lock = threading.Lock()
        self.status, self.keypoints, self.requests = [], {}, {}
        node.create_subscription(String, rc.STATUS_TOPIC, self._status, 200)
        node.create_subscription(String, rc.KEYPOINTS_TOPIC, self._keypoints, 50)
        node.create_subscription(String, rc.GRASP_REQUEST_TOPIC, self._request, 50)

    def _status(self, msg):
        with self.lock:
            self.status.append(msg.data)

    def _store(self, store, msg):
        try:
            data = json.loads(msg.data)
            key = int(data['command_id'])
        except (ValueError, KeyError, TypeError):
            return
        with self.lock:
            store[key] = data

    def _keypoints(self, msg):
        self._store(self.keypoints, msg)

    def _request(self, msg):
        self._store(self.requests, msg)

    def snapshot(self):
        """(status lines, keypoints by id, requests by id)."""
        with self.lock:
            return list(self.status), dict(self.keypoints), dict(self.requests)


class Player:
    """Publishes a bag's messages with their timing; feeds a GroundTruthRuntime on the way."""

    def __init__(self, node, reader, runtime=None, rate=1.0, publish_clock=True, log=print):
        if rate <= 0:
            raise ValueError(f'--rate must be > 0, got {rate}')
        self.node, self.reader, self.runtime = node, reader, runtime
        self.rate, self.log = float(rate), log
        self.publishers, self.skipped, self.commands, self.errors = {}, [], [], []
        self.published = 0
        for conn in reader.connections:
            if conn.topic in self.publishers or conn.topic in self.skipped:
                continue
            cls = message_class(conn.msgtype)
            if cls is None:
                self.skipped.append(conn.topic)
                log(f'replay: warning: skipping {conn.topic}: message type {conn.msgtype} '
                    f'is not known here')
                continue
            self.publishers[conn.topic] = node.create_publisher(cls, conn.topic, 50)
        self.clock_pub = None
        if publish_clock:
            from rosgraph_msgs.msg import Clock
            self.clock_pub = node.create_publisher(Clock, CLOCK_TOPIC, 10)

    def wait_for_graph(self, topics=(rc.COMMAND_TOPIC, rc.COLOR_TOPIC, rc.DEPTH_TOPIC),
                       timeout=10.0):
        """Wait until the recorded topics among ``topics`` have subscribers; False if not."""
        pubs = [self.publishers[t] for t in topics if t in self.publishers]
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if all(p.get_subscription_count() > 0 for p in pubs):
                return True
            time.sleep(0.05)
        return False

    def feed(self, topic, msgtype, raw):
        """Give the ground-truth runtime the images and ground truth it needs."""
        if self.runtime is None:
            return
        try:
            if topic == GROUND_TRUTH_TOPIC:
                self.runtime.add_ground_truth(parse_ground_truth(
                    deserialize(raw, msgtype).data, f'{self.reader.path} [{topic}]'))
            elif topic in (rc.COLOR_TOPIC, rc.DEPTH_TOPIC):
                from bopask_ros.image_conversion import depth_image_to_metres, image_to_array
                msg = deserialize(raw, msgtype)
                stamp = rc.stamp_to_ns(msg.header.stamp)
                if topic == rc.COLOR_TOPIC:
                    rgb = image_to_array(msg)
                    self.runtime.add_color(stamp, rgb[:, :, ::-1] if msg.encoding == 'bgr8'
                                           else rgb)
                else:
                    self.runtime.add_depth(stamp, depth_image_to_metres(msg))
        except (GroundTruthError, ValueError) as exc:
            self.log(f'replay: warning: {exc}')

    def play(self):
        """Publish every message with its recorded timing (scaled by the rate)."""
        wall0 = t0 = None
        try:
            for conn, t_ns, raw in self.reader.messages():
                if conn.topic not in self.publishers:
                    continue
                if t0 is None:
                    wall0, t0 = time.monotonic(), t_ns
                delay = wall0 + (t_ns - t0) / 1e9 / self.rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                self.feed(conn.topic, conn.msgtype, raw)
                if self.clock_pub is not None:
                    from rosgraph_msgs.msg import Clock
                    self.clock_pub.publish(Clock(clock=rc.ns_to_stamp(t_ns)))
                self.publishers[conn.topic].publish(bytes(raw))
                self.published += 1
                if conn.topic == rc.COMMAND_TOPIC:
                    try:
                        text = deserialize(raw, conn.msgtype).data
                    except Exception:  # noqa: BLE001 - a command of another type: keep going
                        text = '?'
                    self.commands.append({'text': text, 'log_ns': t_ns})
        except BagError as exc:
            self.errors.append(str(exc))
            self.log(f'replay: error: {exc}')

    def load(self, stamps):
        """Feed the runtime again with the images and ground truth of ``stamps`` (scoring)."""
        stamps = set(int(s) for s in stamps)
        topics = (GROUND_TRUTH_TOPIC, rc.COLOR_TOPIC, rc.DEPTH_TOPIC)
        try:
            for conn, _, raw in self.reader.messages(topics=topics):
                if conn.topic not in self.publishers:
                    continue
                msg = deserialize(raw, conn.msgtype)
                if conn.topic == GROUND_TRUTH_TOPIC:
                    stamp = json.loads(msg.data).get('stamp_ns') if msg.data else None
                else:
                    stamp = rc.stamp_to_ns(msg.header.stamp)
                if stamp is not None and int(stamp) in stamps:
                    self.feed(conn.topic, conn.msgtype, raw)
        except (BagError, ValueError) as exc:
            if str(exc) not in self.errors:
                self.errors.append(str(exc))


def wait_for_outcomes(collector, n_commands, timeout):
    """Wait until each of the ``n_commands`` last commands has a request or a refusal."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        lines, _, requests = collector.snapshot()
        ids = scoring.command_ids(lines, 'vlm')
        if len(ids) >= n_commands:
            base = min(ids)
            if all((base + k) in requests or scoring.refusal_of(lines, base + k)
                   for k in range(n_commands)):
                return True
        time.sleep(0.1)
    return False


def reference(runtime, payload, backend, coords, bp_params):
    """Reference GraspTarget and 3D ground-truth grasp (base frame) of one answered command."""
    from bopask_ros.backprojection import lift_keypoints
    from bopask_ros.vlm import ask, parse_command
    stamp = int(payload['stamp_ns'])
    frame = runtime.frame_at(stamp)
    if frame is None:
        raise ValueError(f'the bag holds no complete frame (images + ground truth) with the '
                         f'keypoints stamp {stamp}')
    gt = runtime.ground_truth_at(stamp)
    answer = ask(backend, frame.rgb, parse_command(payload['command']), coords,
                 {'sim_frame': frame})
    target = lift_keypoints(answer.grasp_px, answer.waypoints_px, frame.depth_m, gt.K,
                            gt.T_base_camera, bp_params)
    return target, gt.T_base_camera @ backend.last_grasp.T_cam


def score(commands, collector, runtime, ref_backend, coords, bp_params, log=print):
    """One row per recorded command (see ``replay_scoring``)."""
    lines, keypoints, requests = collector.snapshot()
    ids = scoring.command_ids(lines, 'vlm')
    base = min(ids) if ids else None
    rows = []
    for k, cmd in enumerate(commands):
        row = {'index': k + 1, 'command': cmd['text'], 'outcome': 'no answer'}
        rows.append(row)
        if base is None:
            row['note'] = 'no status from the vlm node'
            continue
        cid = base + k
        row['command_id'] = cid
        refusal = scoring.refusal_of(lines, cid)
        if cid not in requests:
            if refusal:
                row.update(outcome='refused', refusal=refusal,
                           parse_failure=scoring.is_parse_failure(refusal))
            continue
        if runtime is None or cid not in keypoints:
            row.update(outcome='no reference', note='no ground truth in the bag'
                       if runtime is None else 'keypoints message missing')
            continue
        try:
            target, gt_T = reference(runtime, keypoints[cid], ref_backend, coords, bp_params)
            row.update(scoring.score_command(requests[cid], target, gt_T))
            row['outcome'] = 'scored'
            row['stamp_ns'] = int(keypoints[cid]['stamp_ns'])
        except Exception as exc:  # noqa: BLE001 - a reference that cannot be built is reported
            row.update(outcome='no reference', note=f'reference failed: {exc}')
            log(f'replay: command {k + 1}: reference failed: {exc}')
    return rows


def backprojection_params(arguments):
    """BackprojectionParams from the config files and ``name:=value`` overrides."""
    from bopask_ros.backprojection import BackprojectionParams
    from bopask_ros.graph import node_parameters, resolve
    files, overrides, _ = resolve(dict(arguments, sim=False))
    p = node_parameters('backprojection_node', files, overrides)
    names = ('depth_window', 'grasp_depth', 'table_z', 'min_tcp_height', 'top_radius',
             'top_band')
    return BackprojectionParams(**{n: type(getattr(BackprojectionParams, n))(p[n])
                                   for n in names if n in p})


def vlm_parameters(arguments):
    """The vlm node's parameters from the config files and overrides."""
    from bopask_ros.graph import node_parameters, resolve
    from bopask_ros.vlm_node import DEFAULTS
    files, overrides, _ = resolve(dict(arguments, sim=False))
    return dict(DEFAULTS, **node_parameters('vlm_node', files, overrides))


def start_graph(context, arguments, vlm_backend, runtime, offset_px, rotate_deg):
    """Start the vlm + backprojection nodes in this process on the replay's context."""
    from bopask_ros.graph import Graph
    from bopask_ros.replay_oracle import SeededOracleBackend
    from bopask_ros.sim_runtime import set_runtime
    args = dict(arguments)
    args.update({'sim': False, 'vlm_backend': vlm_backend, 'vlm_node.use_sim_time': True,
                 'backprojection_node.use_sim_time': True})
    graph = Graph(args, context=context)
    graph.names = ['vlm_node', 'backprojection_node']
    if vlm_backend == 'oracle':
        set_runtime(runtime)  # the oracle's "simulator" is the recorded ground truth
    graph.start()
    if vlm_backend == 'oracle':
        vlm = graph.nodes['vlm_node']
        vlm.backend = SeededOracleBackend(runtime, coords=vlm.p['coords'],
                                          seed=vlm.p['oracle_seed'],
                                          max_tilt_deg=vlm.p['oracle_max_tilt_deg'],
                                          offset_px=offset_px, rotate_deg=rotate_deg)
    return graph


def replay(bag, context, rate=1.0, graph_args=None, vlm_backend='oracle', offset_px=(0, 0),
           rotate_deg=0.0, timeout=60.0, publish_clock=True, log=print):
    """Replay ``bag`` and return the report dict (raises BagError when it cannot be opened)."""
    from rclpy.executors import MultiThreadedExecutor
    from rclpy.node import Node

    from bopask_ros.replay_oracle import GroundTruthRuntime, SeededOracleBackend
    from bopask_ros.sim_runtime import set_runtime
    reader = BagReader(bag)
    topics = {t.topic for t in reader.topics()}
    runtime = GroundTruthRuntime() if GROUND_TRUTH_TOPIC in topics else None
    if runtime is None:
        log(f'replay: warning: {bag} has no {GROUND_TRUTH_TOPIC}: answers are collected but '
            f'not scored')
    graph_args = dict(graph_args or {})
    graph = executor = None
    node = Node('bopask_replay', context=context)
    collector = Collector(node)
    player = Player(node, reader, runtime, rate, publish_clock, log)
    try:
        if graph_args.pop('__start__', False):
            if vlm_backend == 'oracle' and runtime is None:
                raise BagError(f'{bag}: the oracle backend needs {GROUND_TRUTH_TOPIC} in the bag')
            graph = start_graph(context, graph_args, vlm_backend, runtime, offset_px,
                                rotate_deg)
            graph.add_node(node)
            graph.spin_in_thread()
        else:
            executor = MultiThreadedExecutor(num_threads=2, context=context)
            executor.add_node(node)
            threading.Thread(target=executor.spin, daemon=True).start()
        if not player.wait_for_graph():
            log(f'replay: warning: nothing subscribes to {rc.COMMAND_TOPIC} / the camera '
                f'topics on ROS_DOMAIN_ID {rc.domain_id()}; is the graph running?')
        player.play()
        if not wait_for_outcomes(collector, len(player.commands), timeout):
            log(f'replay: warning: not every command was answered within {timeout:g} s')
        rows = []
        if runtime is not None:
            vlm_p = vlm_parameters(graph_args)
            ref = SeededOracleBackend(runtime, coords=vlm_p['coords'], seed=vlm_p['oracle_seed'],
                                      max_tilt_deg=vlm_p['oracle_max_tilt_deg'])
            _, keypoints, _ = collector.snapshot()
            player.load([kp['stamp_ns'] for kp in keypoints.values() if 'stamp_ns' in kp])
            rows = score(player.commands, collector, runtime, ref, vlm_p['coords'],
                         backprojection_params(graph_args), log)
        else:
            rows = score(player.commands, collector, None, None, None, None, log)
        backend = vlm_backend
        if graph is not None:
            backend = getattr(graph.nodes['vlm_node'].backend, 'label', vlm_backend)
        return {
            'bag': str(bag), 'rate': rate, 'backend': backend if graph is not None else
            'external graph', 'messages_published': player.published,
            'skipped_topics': player.skipped, 'errors': player.errors,
            'status': collector.snapshot()[0], 'rows': rows, 'summary': scoring.summarize(rows),
        }
    finally:
        if graph is not None:
            graph.shutdown()
        else:
            if executor is not None:
                executor.shutdown(timeout_sec=5.0)
            node.destroy_node()
        if runtime is not None:
            set_runtime(None)
            runtime.close()
        reader.close()


def write_report(report, path):
    """Write the markdown report and the JSON beside it; return (md path, json path)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(scoring.render_markdown(report))
    json_path = path.with_suffix('.json')
    json_path.write_text(json.dumps(report, indent=1, default=_json_default))
    return path, json_path


def _json_default(o):
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    raise TypeError(f'not JSON serialisable: {type(o)}')


def run(args):
    """Entry point of ``bopask replay``."""
    import rclpy

    from bopask_ros.graph import parse_assignments
    try:
        graph_args = parse_assignments(args.args)
    except ValueError as exc:
        print(f'replay: {exc}')
        return 2
    if args.graph:
        graph_args['__start__'] = True
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=rc.domain_id())
    try:
        report = replay(args.bag, context, rate=args.rate, graph_args=graph_args,
                        vlm_backend=args.vlm_backend, offset_px=args.oracle_offset_px,
                        rotate_deg=args.oracle_rotate_deg, timeout=args.timeout,
                        publish_clock=not args.no_clock)
    except (BagError, ValueError) as exc:
        print(f'replay: {exc}')
        return 2
    finally:
        rclpy.try_shutdown(context=context)
    md, js = write_report(report, args.report)
    print(scoring.render_markdown(report))
    print(f'replay: wrote {md} and {js}')
    return 1 if report['errors'] else 0
