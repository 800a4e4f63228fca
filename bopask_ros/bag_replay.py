"""``bopask replay BAG``: play a recorded session into the graph and score what it answers.

Publishes every message of a rosbag2 directory (``bopask record`` or ``ros2 bag record``;
MCAP or sqlite3) on its topic with the original timing, scaled by ``--rate``: stamped
messages (images, camera_info, ground truth) at their capture stamp, the others (commands)
at their receive time -- a recorder can receive big images late, after a command the live
graph answered with them (``--reorder-window``; 0 plays in receive order like
``ros2 bag play``). The CDR bytes are published unchanged, so header stamps are the
recorded ones; ``/clock`` follows the play time (like ``ros2 bag play --clock``), so nodes
started with
``use_sim_time:=true`` judge image age against the recording, not the wall clock. Topics
whose message type is not importable here are skipped with a warning, and so are messages
whose bytes are not valid CDR; recorded outputs of the nodes under test (status, keypoints,
grasp request, markers ...) and ``/clock`` are not played.

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

import heapq
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
GRAPH_OUTPUTS = (rc.STATUS_TOPIC, rc.KEYPOINTS_TOPIC, rc.OVERLAY_TOPIC, rc.GRASP_REQUEST_TOPIC,
                 rc.GRASP_POSE_TOPIC, rc.WAYPOINTS_TOPIC, rc.MARKERS_TOPIC, CLOCK_TOPIC)
'''Recorded outputs of the nodes under test (and /clock) are not played back: the replay
publishes /clock itself and collects fresh outputs.'''


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
    parser.add_argument('--reorder-window', type=float, default=3.0, metavar='S',
                        help='play stamped messages at their stamp, reordering up to S seconds '
                        'of the bag (default 3; 0: receive-time order like ros2 bag play)')
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

    def __init__(self, node, reader, runtime=None, rate=1.0, publish_clock=True, log=print,
                 feed_live=True, reorder_window_s=3.0, max_skew_s=10.0):
        if rate <= 0:
            raise ValueError(f'--rate must be > 0, got {rate}')
        self.node, self.reader, self.runtime = node, reader, runtime
        self.feed_live = feed_live   # feed the runtime while playing (the in-process oracle)
        self.rate, self.log = float(rate), log
        self.reorder_window_s, self.max_skew_s = float(reorder_window_s), float(max_skew_s)
        self.publishers, self.skipped, self.commands, self.errors = {}, [], [], []
        self.corrupt = []
        self.lateness_ms = []   # publish time minus the scheduled (scaled recorded) time
        self.published = 0
        for conn in reader.connections:
            if conn.topic in self.publishers or conn.topic in self.skipped:
                continue
            if conn.topic in GRAPH_OUTPUTS:
                self.skipped.append(conn.topic)
                log(f'replay: not playing {conn.topic}: an output of the graph being scored')
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

    def feed(self, topic, msg):
        """Give the ground-truth runtime the images and ground truth it needs."""
        if self.runtime is None:
            return
        from bopask_ros.image_conversion import depth_image_to_metres, image_to_array
        try:
            if topic == GROUND_TRUTH_TOPIC:
                self.runtime.add_ground_truth(parse_ground_truth(
                    msg.data, f'{self.reader.path} [{topic}]'))
            elif topic == rc.COLOR_TOPIC:
                rgb = image_to_array(msg)
                self.runtime.add_color(rc.stamp_to_ns(msg.header.stamp),
                                       rgb[:, :, ::-1] if msg.encoding == 'bgr8' else rgb)
            elif topic == rc.DEPTH_TOPIC:
                self.runtime.add_depth(rc.stamp_to_ns(msg.header.stamp),
                                       depth_image_to_metres(msg))
        except (GroundTruthError, ValueError) as exc:
            self.log(f'replay: warning: {topic}: {exc}')

    def _decode(self, conn, t_ns, raw):
        """The rclpy message, or None (warned, counted) when its bytes are not valid CDR."""
        try:
            return deserialize(raw, conn.msgtype)
        except Exception as exc:  # noqa: BLE001 - rclpy raises RMWError for bad CDR
            self.corrupt.append(f'{conn.topic} at {t_ns}')
            self.log(f'replay: warning: {self.reader.path}: skipping a corrupt '
                     f'{conn.msgtype} message on {conn.topic} at log time {t_ns} ({exc})')
            return None

    def play_time(self, topic, msg, log_ns):
        """When a message is played: its capture stamp when it has one, else its log time.

        Log times are receive times, and a recorder's big image messages can arrive late
        (seconds, on a loaded machine) -- after a command that the live graph answered with
        an earlier image. Stamped messages (header stamps; the ground truth's ``stamp_ns``)
        therefore play at their stamp, unless it is unset or more than ``max_skew_s`` away
        from the log time (another clock).
        """
        stamp = None
        if topic == GROUND_TRUTH_TOPIC:
            try:
                stamp = int(json.loads(msg.data)['stamp_ns'])
            except (ValueError, KeyError, TypeError):
                stamp = None
        elif hasattr(msg, 'header'):
            stamp = rc.stamp_to_ns(msg.header.stamp)
        if not stamp or abs(stamp - log_ns) > self.max_skew_s * 1e9:
            return log_ns
        return stamp

    def _ordered(self):
        """Yield (play_ns, conn, log_ns, raw, msg) in play-time order.

        A heap holds ``reorder_window_s`` of the bag (by log time): enough to put late
        images back before the commands they preceded; 0 plays in log-time order.
        """
        heap, seq = [], 0
        window = int(self.reorder_window_s * 1e9)
        for conn, t_ns, raw in self.reader.messages():
            if conn.topic not in self.publishers:
                continue
            msg = self._decode(conn, t_ns, raw)
            if msg is None:
                continue
            play_ns = self.play_time(conn.topic, msg, t_ns) if window > 0 else t_ns
            heapq.heappush(heap, (play_ns, seq, conn, t_ns, raw, msg))
            seq += 1
            while heap and heap[0][0] <= t_ns - window:
                item = heapq.heappop(heap)
                yield item[0], item[2], item[3], item[4], item[5]
        while heap:
            item = heapq.heappop(heap)
            yield item[0], item[2], item[3], item[4], item[5]

    def play(self):
        """Publish every message with its recorded timing (scaled by the rate)."""
        from rosgraph_msgs.msg import Clock
        wall0 = t0 = None
        clock_ns = 0
        try:
            for play_ns, conn, t_ns, raw, msg in self._ordered():
                if t0 is None:
                    wall0, t0 = time.monotonic(), play_ns
                # max(): a message later than the reorder window plays at once.
                due = wall0 + max(0, play_ns - t0) / 1e9 / self.rate
                time.sleep(max(0.0, due - time.monotonic()))
                if self.feed_live:
                    self.feed(conn.topic, msg)
                if self.clock_pub is not None:
                    clock_ns = max(clock_ns, play_ns)   # /clock never runs backwards
                    self.clock_pub.publish(Clock(clock=rc.ns_to_stamp(clock_ns)))
                # The recorded bytes themselves: header stamps stay as recorded.
                self.publishers[conn.topic].publish(bytes(raw))
                self.lateness_ms.append(max(0.0, time.monotonic() - due) * 1000.0)
                self.published += 1
                if conn.topic == rc.COMMAND_TOPIC:
                    self.commands.append({'text': str(getattr(msg, 'data', msg)),
                                          'log_ns': t_ns})
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
                try:
                    msg = deserialize(raw, conn.msgtype)
                except Exception:  # noqa: BLE001 - corrupt message, warned while playing
                    continue
                if conn.topic == GROUND_TRUTH_TOPIC:
                    try:
                        stamp = int(json.loads(msg.data)['stamp_ns'])
                    except (ValueError, KeyError, TypeError):
                        continue
                else:
                    stamp = rc.stamp_to_ns(msg.header.stamp)
                if stamp in stamps:
                    self.feed(conn.topic, msg)
        except Exception as exc:  # noqa: BLE001 - already reported while playing
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
    grasp = backend.last_grasp
    return target, None if grasp is None else gt.T_base_camera @ grasp.T_cam


def score(commands, collector, runtime, ref_backend, coords, bp_params, log=print,
          load=None):
    """One row per recorded command (see ``replay_scoring``).

    ``load(stamps)`` puts the recorded frames of those stamps into ``runtime`` (re-read from
    the bag, one command at a time, so long bags need no large frame history).
    """
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
            if load is not None:
                load([int(keypoints[cid]['stamp_ns'])])
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
    from bopask_ros.backprojection_node import backprojection_params as from_values
    from bopask_ros.graph import node_parameters, resolve
    files, overrides, _ = resolve(dict(arguments, sim=False))
    return from_values(node_parameters('backprojection_node', files, overrides))


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
           rotate_deg=0.0, timeout=60.0, publish_clock=True, graph_wait_s=10.0, log=print,
           reorder_window_s=3.0):
    """Replay ``bag`` and return the report dict (raises BagError when it cannot be opened)."""
    from rclpy.executors import MultiThreadedExecutor
    from rclpy.node import Node

    from bopask_ros.replay_oracle import GroundTruthRuntime, SeededOracleBackend
    from bopask_ros.sim_runtime import set_runtime
    reader = BagReader(bag)
    has_gt = any(t.topic == GROUND_TRUTH_TOPIC and t.count > 0 for t in reader.topics())
    runtime = GroundTruthRuntime(history=30) if has_gt else None
    if runtime is None:
        log(f'replay: warning: {bag} has no {GROUND_TRUTH_TOPIC} messages (not a sim '
            f'recording?): answers are collected but not scored')
    graph_args = dict(graph_args or {})
    graph = executor = None
    node = Node('bopask_replay', context=context)
    collector = Collector(node)
    start = graph_args.pop('__start__', False)
    player = Player(node, reader, runtime, rate, publish_clock, log,
                    feed_live=start and vlm_backend == 'oracle',
                    reorder_window_s=reorder_window_s)
    try:
        if start:
            if vlm_backend == 'oracle' and runtime is None:
                raise BagError(f'{bag}: the oracle backend needs {GROUND_TRUTH_TOPIC} messages '
                               f'in the bag (a sim recording); use --vlm-backend transformers')
            graph = start_graph(context, graph_args, vlm_backend, runtime, offset_px,
                                rotate_deg)
            graph.add_node(node)
            graph.spin_in_thread()
        else:
            executor = MultiThreadedExecutor(num_threads=2, context=context)
            executor.add_node(node)
            threading.Thread(target=executor.spin, daemon=True).start()
        if not player.wait_for_graph(timeout=graph_wait_s):
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
            rows = score(player.commands, collector, runtime, ref, vlm_p['coords'],
                         backprojection_params(graph_args), log, load=player.load)
        else:
            rows = score(player.commands, collector, None, None, None, None, log)
        backend = vlm_backend
        if graph is not None:
            backend = getattr(graph.nodes['vlm_node'].backend, 'label', vlm_backend)
        return {
            'bag': str(bag), 'rate': rate, 'backend': backend if graph is not None else
            'external graph', 'messages_published': player.published,
            'skipped_topics': player.skipped, 'corrupt_messages': player.corrupt,
            'errors': player.errors, 'timing': timing_summary(player.lateness_ms),
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


def timing_summary(lateness_ms):
    """Median / max publish lateness (ms) against the recorded timing."""
    if not lateness_ms:
        return {}
    values = np.asarray(lateness_ms, dtype=float)
    return {'median_lateness_ms': float(np.median(values)),
            'max_lateness_ms': float(values.max())}


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
                        publish_clock=not args.no_clock, reorder_window_s=args.reorder_window)
    except (BagError, ValueError) as exc:
        print(f'replay: {exc}')
        return 2
    finally:
        rclpy.try_shutdown(context=context)
    md, js = write_report(report, args.report)
    print(scoring.render_markdown(report))
    print(f'replay: wrote {md} and {js}')
    return 1 if report['errors'] else 0
