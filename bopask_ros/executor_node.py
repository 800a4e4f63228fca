"""executor node: grasp request -> workspace check -> IK -> joint trajectories + gripper.

Input: ``/bopask/grasp_request`` (JSON from the backprojection node). Every target is checked
against the workspace box and IK is solved for the whole pick and place *before* the first
trajectory is sent, so a refusal (workspace, IK) never moves the arm. Then the steps are sent
one by one: arm steps as trajectory_msgs/JointTrajectory on the controller topic (the sim node,
or a ros2_control JointTrajectoryController), gripper steps as std_msgs/Float64 opening in
metres on ``/bopask/gripper/command``; a step is done when ``/joint_states`` reach its goal.

Second command while one runs: **rejected** with a status line (not queued): the scene the
new command was asked about is changing under the arm.

Publishes ``/bopask/status`` (one line per step, every refusal with its reason),
``/bopask/busy`` (std_msgs/Bool, transient local: the vlm node rejects commands while True)
and ``/bopask/executor/result`` (JSON per command: outcome, reason, latency figures).

Backends: ``ik`` (mink IK on the Panda model, ``bopask_gen.sim.ik``; trajectories go to the
controller topic) and ``moveit`` (moveit_py, only where it is importable: the same up-front
workspace and IK checks, then MoveIt plans a collision-aware motion to each step's IK goal
and executes it through its controllers; gripper steps still go to the gripper topic).
The moveit path cannot run on the pip-only install and is untested here.
"""

import json
import threading
import time

import numpy as np
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile

from bopask_ros import ros_common as rc
from bopask_ros.executor import ExecutorParams, IKError, plan_pick_place, WorkspaceError

ARM_JOINTS = [f'panda_joint{i}' for i in range(1, 8)]
RESULT_TOPIC = '/bopask/executor/result'

DEFAULTS = {
    'backend': 'ik',
    'dry_run': False,          # plan and report (status, result, markers), send nothing
    'moveit_group': 'panda_arm',
    'base_frame': 'panda_link0',
    'controller_topic': rc.ARM_TRAJECTORY_TOPIC,
    'gripper_topic': rc.GRIPPER_TOPIC,
    'joint_names': ARM_JOINTS,
    'workspace_min': [0.2, -0.5, 0.005],
    'workspace_max': [0.85, 0.5, 0.6],
    'table_z': 0.0,
    'pregrasp_offset': 0.12,
    'lift_height': 0.15,
    'carry_clearance': 0.05,
    'carry_over_scene': True,
    'place_standoff': 0.13,
    'place_clearance': 0.01,
    'retreat_offset': 0.12,
    'cartesian_step': 0.05,
    'max_joint_speed': 0.8,
    'max_joint_jump': 0.5,
    'joint_tolerance': 0.03,
    'stall_tolerance': 0.15,
    'open_margin': 0.015,
    'step_timeout_s': 5.0,
    'gripper_timeout_s': 5.0,
    'gripper_settle_s': 0.3,
    'min_held_width': 0.004,   # a closed hand narrower than this holds nothing: stop there
}


class MinkIK:
    """Adapter of ``bopask_gen.sim.ik.PandaIK`` (base-frame targets) to ``solve(T, q)``."""

    def __init__(self):
        from bopask_gen.sim.ik import PandaIK
        self._ik = PandaIK()  # base at the origin: targets in the robot base frame
        self.last_message = ''
        # (lower, upper) joint angles: random starts of the grasp configuration search.
        self.joint_limits = (self._ik.lower.copy(), self._ik.upper.copy())

    def solve(self, T_base_tcp, q_seed, restarts=0):
        """Return joint angles (7,) or None (``last_message`` says why)."""
        res = self._ik.solve(T_base_tcp, q_seed, restarts=restarts)
        self.last_message = res.message
        return res.q if res.success else None

    def forward(self, q):
        """TCP pose (4x4, base frame) at joint angles ``q``."""
        return self._ik.forward(q)

    def reachable(self, T_base_tcp):
        """False when the pose is out of the arm's reach (a quick necessary condition)."""
        return self._ik.reachable(T_base_tcp)

    def self_collision(self, q):
        """Names of two links of the arm that collide at ``q``, or None."""
        return self._ik.self_collision(q)


def request_plan_arguments(req):
    """``plan_pick_place``'s pose arguments from a grasp request (the decoded JSON).

    Raises ValueError, KeyError or TypeError on a malformed request.
    """
    def optional(key, shape):
        value = req.get(key)
        return None if value is None else np.asarray(value, dtype=float).reshape(shape)
    scene_top = req.get('scene_top_z')
    return {'T_grasp': np.asarray(req['grasp']['T'], dtype=float).reshape(4, 4),
            'width': float(req['grasp']['width']),
            'waypoints': np.asarray(req['waypoints'], dtype=float).reshape(-1, 3),
            'waypoint_rays': optional('waypoint_rays', (-1, 6)),
            'place': optional('place_point', 3),
            'target_point': optional('target_point', 3),
            'scene_top_z': None if scene_top is None else float(scene_top)}


def executor_params(values):
    """ExecutorParams from the node's parameter values (``{name: value}``; lists -> tuples)."""
    return rc.dataclass_from_parameters(ExecutorParams, values)


class ExecutorNode(Node):
    """Thin ROS shell over ``bopask_ros.executor.plan_pick_place``."""

    def __init__(self, **kwargs):
        super().__init__('executor_node', **kwargs)
        self.p = rc.declare(self, DEFAULTS)
        self.params = executor_params(self.p)
        self.status = rc.StatusPublisher(self, 'executor')
        self._moveit = None
        if self.p['backend'] in ('ik', 'moveit'):
            self.ik = MinkIK()
            if self.p['backend'] == 'moveit':
                self._moveit = self._make_moveit()
        else:
            raise ValueError(f'executor backend {self.p["backend"]!r}: use ik or moveit')
        self._joint_state = None
        self._state_lock = threading.Lock()
        self._busy = threading.Event()
        self._worker = None

        from sensor_msgs.msg import JointState
        from std_msgs.msg import Bool, Float64, String
        from trajectory_msgs.msg import JointTrajectory
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.traj_pub = self.create_publisher(JointTrajectory, self.p['controller_topic'], 10)
        self.grip_pub = self.create_publisher(Float64, self.p['gripper_topic'], 10)
        self.busy_pub = self.create_publisher(Bool, rc.BUSY_TOPIC, latched)
        self.result_pub = self.create_publisher(String, RESULT_TOPIC, 10)
        self.create_subscription(JointState, rc.JOINT_STATES_TOPIC, self.on_joint_state, 20)
        self.create_subscription(String, rc.GRASP_REQUEST_TOPIC, self.on_request, 10)
        self._set_busy(False)

    def _make_moveit(self):
        try:
            from moveit.planning import MoveItPy
        except ImportError as exc:
            raise RuntimeError('executor backend moveit needs moveit_py (a ROS 2 install with '
                               'MoveIt); use backend ik without it') from exc
        return MoveItPy(node_name='bopask_moveit')

    def _moveit_step(self, step):
        """Plan with MoveIt to the step's final IK configuration and execute it."""
        from moveit.core.robot_state import RobotState
        group = self.p['moveit_group']
        arm = self._moveit.get_planning_component(group)
        goal = RobotState(self._moveit.get_robot_model())
        goal.set_joint_group_positions(group, np.asarray(step.positions[-1], dtype=float))
        goal.update()
        arm.set_start_state_to_current_state()
        arm.set_goal_state(robot_state=goal)
        plan = arm.plan()
        if not plan:
            raise RuntimeError(f'MoveIt found no collision-free plan for {step.name}')
        self._moveit.execute(plan.trajectory, controllers=[])

    # ------------------------------------------------------------------ inputs
    def on_joint_state(self, msg):
        """Keep the latest arm and finger positions."""
        with self._state_lock:
            self._joint_state = (dict(zip(msg.name, msg.position)), time.monotonic())

    def arm_positions(self):
        """Current (7,) arm joint angles in parameter order, or None."""
        with self._state_lock:
            state = self._joint_state
        if state is None:
            return None
        names, _ = state
        try:
            return np.array([names[n] for n in self.p['joint_names']])
        except KeyError:
            return None

    def gripper_opening(self):
        """Current finger opening (sum of the two finger joints), or None."""
        with self._state_lock:
            state = self._joint_state
        if state is None:
            return None
        fingers = [v for k, v in state[0].items() if 'finger' in k]
        return float(sum(fingers)) if fingers else None

    def _set_busy(self, busy):
        from std_msgs.msg import Bool
        if busy:
            self._busy.set()
        else:
            self._busy.clear()
        self.busy_pub.publish(Bool(data=bool(busy)))

    def _result(self, command_id, outcome, reason='', **extra):
        from std_msgs.msg import String
        self.result_pub.publish(String(data=rc.dumps(dict(
            command_id=command_id, outcome=outcome, reason=reason, **extra))))

    def on_request(self, msg):
        """Plan a pick and place; refuse or start executing it on a worker thread."""
        received = rc.wall_time()
        try:
            req = json.loads(msg.data)
            command_id = req.get('command_id')
            plan_args = request_plan_arguments(req)
        except (ValueError, KeyError, TypeError) as exc:
            self.status(f'refused: unreadable grasp request ({exc})', 'error')
            return
        if self._busy.is_set():
            reason = f'busy with another command; command {command_id} rejected (not queued)'
            self.status(f'refused command {command_id}: {reason}', 'warn')
            self._result(command_id, 'refused', reason)
            return
        if req.get('frame_id') not in (None, self.p['base_frame']):
            reason = f'grasp request in frame {req.get("frame_id")!r}, expected ' \
                     f'{self.p["base_frame"]!r}'
            self.status(f'refused command {command_id}: {reason}', 'error')
            self._result(command_id, 'refused', reason)
            return
        if len(plan_args['waypoints']) < 1:
            self.status(f'refused command {command_id}: no waypoints to place at', 'error')
            self._result(command_id, 'refused', 'no waypoints')
            return
        q0 = self.arm_positions()
        if q0 is None:
            reason = f'no joint states for {self.p["joint_names"]} on {rc.JOINT_STATES_TOPIC}'
            self.status(f'refused command {command_id}: {reason}', 'error')
            self._result(command_id, 'refused', reason)
            return
        self._set_busy(True)
        t0 = time.perf_counter()
        try:
            skipped = []
            steps = plan_pick_place(q_start=q0, ik=self.ik, params=self.params, skipped=skipped,
                                    **plan_args)
        except (WorkspaceError, IKError) as exc:
            kind = 'workspace' if isinstance(exc, WorkspaceError) else 'ik'
            self.status(f'refused command {command_id}: {exc}', 'error')
            self._result(command_id, 'refused', str(exc), refusal=kind)
            self._set_busy(False)
            return
        plan_ms = (time.perf_counter() - t0) * 1000.0
        self.status(f'command {command_id}: planned {len(steps)} steps '
                    f'({", ".join(s.name for s in steps)}) in {plan_ms:.1f} ms'
                    + (f'; skipped intermediate waypoints {skipped} (outside the workspace)'
                       if skipped else ''))
        if self.p['dry_run']:
            # Safety mode for bring-up: everything up to the motion, then nothing moves.
            self.status(f'command {command_id}: dry run, nothing sent to the arm or gripper')
            self._result(command_id, 'dry_run', f'planned {len(steps)} steps, not executed')
            self._set_busy(False)
            return
        req.setdefault('timing', {})['request_received'] = received
        self._worker = threading.Thread(target=self._execute, args=(req, steps, plan_ms),
                                        daemon=True)
        self._worker.start()

    # ------------------------------------------------------------------ execution
    def _send_arm(self, step):
        from builtin_interfaces.msg import Duration
        from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint
        msg = JointTrajectory()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.header.frame_id = self.p['base_frame']
        msg.joint_names = list(self.p['joint_names'])
        for q, t in zip(step.positions, step.times):
            sec = int(t)
            msg.points.append(JointTrajectoryPoint(
                positions=[float(x) for x in q],
                time_from_start=Duration(sec=sec, nanosec=int((t - sec) * 1e9))))
        self.traj_pub.publish(msg)

    def _wait_arm(self, goal, timeout, min_time=0.0, stall_tolerance=None):
        """Wait until the arm is at ``goal``; return (reached, errors, note).

        Reached: every joint within ``joint_tolerance``, or -- once ``min_time`` (the
        trajectory's duration) has passed -- the arm has stopped (no joint moved more than
        2 mrad in 0.3 s) within ``stall_tolerance`` of the goal: a light contact (fingers on
        the object) that a real controller's goal tolerance also accepts.
        """
        stall_tolerance = self.p['stall_tolerance'] if stall_tolerance is None \
            else stall_tolerance
        start = time.monotonic()
        end = start + timeout
        err = np.inf
        history = []
        while time.monotonic() < end:
            q = self.arm_positions()
            now = time.monotonic()
            if q is not None:
                err = np.abs(q - goal)
                if np.max(err) < self.p['joint_tolerance']:
                    return True, err, ''
                history.append((now, q))
                history = [(t, x) for t, x in history if now - t <= 0.3]
                stopped = history[0][0] <= now - 0.25 and \
                    np.max(np.abs(history[0][1] - q)) < 0.002
                if now - start > min_time and stopped and \
                        np.max(err) < stall_tolerance:
                    return True, err, f'stopped {np.max(err):.3f} rad short of the goal'
            time.sleep(0.01)
        return False, err, ''

    def _wait_gripper(self, width):
        from std_msgs.msg import Float64
        self.grip_pub.publish(Float64(data=float(width)))
        end = time.monotonic() + self.p['gripper_timeout_s']
        history = []
        time.sleep(0.05)
        while time.monotonic() < end:
            w = self.gripper_opening()
            if w is not None:
                if abs(w - width) < 0.002:
                    return True
                history.append(w)
                # Stopped on an object: no motion over the last ~0.15 s.
                if len(history) > 15 and abs(history[-1] - history[-15]) < 0.0005:
                    time.sleep(self.p['gripper_settle_s'])
                    return True
            time.sleep(0.01)
        return False

    def _check_holding(self):
        """Raise when the closed hand holds nothing: never lift or carry an empty grasp."""
        width = self.gripper_opening()
        if width is not None and width < self.p['min_held_width']:
            self._wait_gripper(self.params.open_width)  # release, then stop where it is
            raise RuntimeError(f'gripper closed on nothing (opening {width * 1000:.1f} mm < '
                               f'{self.p["min_held_width"] * 1000:.1f} mm): no object in the '
                               f'hand, stopped before lifting')

    def _execute(self, req, steps, plan_ms):
        command_id = req.get('command_id')
        timing = dict(req.get('timing', {}), plan_ms=plan_ms)
        try:
            for i, step in enumerate(steps):
                if step.kind == 'gripper':
                    self.status(f'command {command_id}: step {i + 1}/{len(steps)} {step.name} '
                                f'gripper to {step.width * 100:.1f} cm')
                    if not self._wait_gripper(step.width):
                        raise RuntimeError(f'gripper did not reach {step.width:.3f} m')
                    if step.name == 'close':
                        self._check_holding()
                    continue
                if self._moveit is not None:
                    self.status(f'command {command_id}: step {i + 1}/{len(steps)} {step.name} '
                                f'via MoveIt')
                    self._moveit_step(step)
                    continue
                self._send_arm(step)
                if 'command_to_trajectory_ms' not in timing and 'command_time' in timing:
                    # Command received -> first trajectory out, minus the model's inference.
                    timing['command_to_trajectory_ms'] = (
                        (rc.wall_time() - timing['command_time']) * 1000.0
                        - timing.get('inference_ms', 0.0))
                self.status(f'command {command_id}: step {i + 1}/{len(steps)} {step.name}: '
                            f'{len(step.positions)} points, {step.duration:.2f} s')
                timeout = step.duration * 3.0 + self.p['step_timeout_s']
                t_step = time.monotonic()
                # Placing ends when the held object touches down: any stop counts.
                stall = np.inf if step.name == 'place' else None
                reached, err, note = self._wait_arm(step.positions[-1], timeout,
                                                    step.duration, stall)
                if not reached:
                    raise RuntimeError(f'arm did not reach the end of {step.name} within '
                                       f'{timeout:.0f} s (joint errors {np.round(err, 3)})')
                if note:
                    self.status(f'command {command_id}: {step.name} {note} (contact)')
                self.get_logger().debug(f'{step.name} reached in '
                                        f'{time.monotonic() - t_step:.2f} s')
            self.status(f'command {command_id}: done')
            self._result(command_id, 'done', timing=timing)
        except Exception as exc:  # noqa: BLE001 - any failure must reach the status topic
            self.status(f'command {command_id}: failed during execution: {exc}', 'error')
            self._result(command_id, 'failed', str(exc), timing=timing)
        finally:
            self._set_busy(False)


def main(args=None):
    """Run the node alone (``ros2 run bopask_ros executor_node``)."""
    rc.spin_node(ExecutorNode, args)


if __name__ == '__main__':
    main()
