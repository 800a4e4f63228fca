"""sim node: the MuJoCo tabletop as the robot -- trajectory controller, gripper, joint states.

Owns this process's ``SimRuntime`` (``sim_runtime.py``): follows trajectory_msgs/
JointTrajectory on the controller topic (linear interpolation between points, like a
JointTrajectoryController, a new trajectory replacing the old), applies std_msgs/Float64
gripper openings (metres), publishes sensor_msgs/JointState on ``/joint_states`` and renders
the camera for the camera node's ``sim`` backend. The camera is mounted at the calibrated
extrinsic of config/extrinsics.yaml (``extrinsic.*``: camera optical frame in the robot
base frame), so the static transform the backprojection uses is the simulator's truth.
"""

import threading
import time

import numpy as np
from rclpy.node import Node

from bopask_gen.core.transforms import transform_from_xyz_quat_xyzw
from bopask_ros import ros_common as rc
from bopask_ros.sim_runtime import set_runtime, SimRuntime

DEFAULTS = {
    'seed': 0,
    'obj_ids': [0],             # YCB-V ids; [0] (or empty) = random objects
    'n_objects_min': 3,
    'n_objects_max': 5,
    'real_time_factor': 1.0,
    'camera_rate_hz': 2.0,
    'joint_state_rate_hz': 50.0,
    'controller_topic': rc.ARM_TRAJECTORY_TOPIC,
    'gripper_topic': rc.GRIPPER_TOPIC,
    'extrinsic.translation': [0.0, 0.0, 0.0],
    'extrinsic.rotation_xyzw': [0.0, 0.0, 0.0, 1.0],
}
MAX_LAYOUT_TRIES = 10


def make_world(seed, obj_ids, n_objects, T_base_camera):
    """Build a World (retrying random layouts that fail) with the camera at the extrinsic."""
    from bopask_gen.sim.world import World, WorldError
    last = None
    for attempt in range(MAX_LAYOUT_TRIES):
        try:
            world = World(obj_ids=obj_ids or None, n_objects=n_objects,
                          seed=int(seed) + 7919 * attempt)
        except WorldError as exc:
            last = exc
            continue
        world.set_camera_pose(world.T_world_base @ T_base_camera)
        return world
    raise RuntimeError(f'no valid sim layout for seed {seed}: {last}')


def world_factory(seed, obj_ids, n_objects, T_base_camera):
    """A zero-argument factory for SimRuntime."""
    return lambda: make_world(seed, obj_ids, n_objects, T_base_camera)


class SimNode(Node):
    """The simulator as controller + camera source."""

    def __init__(self, runtime=None, **kwargs):
        super().__init__('sim_node', **kwargs)
        self.p = rc.declare(self, DEFAULTS)
        self.T_base_camera = transform_from_xyz_quat_xyzw(self.p['extrinsic.translation'],
                                                          self.p['extrinsic.rotation_xyzw'])
        if runtime is None:
            obj_ids = [int(i) for i in self.p['obj_ids'] if int(i) > 0]
            runtime = SimRuntime(
                world_factory(self.p['seed'], obj_ids,
                              (self.p['n_objects_min'], self.p['n_objects_max']),
                              self.T_base_camera),
                real_time_factor=self.p['real_time_factor'],
                camera_rate_hz=self.p['camera_rate_hz'])
        self.runtime = runtime
        set_runtime(runtime)
        from sensor_msgs.msg import JointState
        from std_msgs.msg import Float64
        from trajectory_msgs.msg import JointTrajectory
        self.js_pub = self.create_publisher(JointState, rc.JOINT_STATES_TOPIC, 20)
        self.create_subscription(JointTrajectory, self.p['controller_topic'],
                                 self.on_trajectory, 10)
        self.create_subscription(Float64, self.p['gripper_topic'], self.on_gripper, 10)
        # Joint states go out from a plain thread, not an executor timer: in rclpy each timer
        # wake-up costs the executor ~1-2 ms of CPU (about 9 % of a core at 50 Hz), for the
        # same message at the same rate.
        self._joint_stop = threading.Event()
        self._joint_thread = threading.Thread(target=self._joint_state_loop,
                                              name='bopask-joint-states', daemon=True)
        self._joint_thread.start()
        self.get_logger().info('MuJoCo world running at real-time factor '
                               f'{self.p["real_time_factor"]}')

    def on_trajectory(self, msg):
        """Follow a JointTrajectory (refused with a log line when malformed)."""
        try:
            times = np.array([p.time_from_start.sec + p.time_from_start.nanosec * 1e-9
                              for p in msg.points])
            positions = np.array([list(p.positions) for p in msg.points], dtype=float)
            if len(times) == 0 or positions.shape[1] != len(msg.joint_names) or \
                    np.any(np.diff(times) < 0) or times[0] < 0:
                raise ValueError('empty trajectory, wrong point size or unordered times')
            self.runtime.submit_trajectory(msg.joint_names, times, positions)
        except (ValueError, IndexError) as exc:
            self.get_logger().error(f'rejected JointTrajectory: {exc}')

    def on_gripper(self, msg):
        """Set the finger opening (metres)."""
        self.runtime.set_gripper(msg.data)

    def _joint_state_loop(self):
        period = 1.0 / float(self.p['joint_state_rate_hz'])
        due = time.monotonic()
        while not self._joint_stop.wait(max(0.0, due - time.monotonic())):
            try:
                self.publish_joints()
            except Exception:  # noqa: BLE001 - Ctrl-C shut the context down before us
                if self.context.ok():
                    raise
                return
            due = max(due + period, time.monotonic() - period)  # no burst after a stall

    def publish_joints(self):
        """Publish the measured joint state."""
        from sensor_msgs.msg import JointState
        state = self.runtime.joint_state()
        if state is None:
            return
        msg = JointState(name=state.names, position=[float(x) for x in state.positions],
                         velocity=[float(x) for x in state.velocities])
        msg.header.stamp = rc.ns_to_stamp(state.stamp_ns)
        self.js_pub.publish(msg)

    def destroy_node(self):
        """Stop the joint state and simulation threads."""
        self._joint_stop.set()
        self._joint_thread.join(timeout=2.0)
        set_runtime(None)
        self.runtime.close()
        return super().destroy_node()


def main(args=None):
    """Run the node alone (``ros2 run bopask_ros sim_node``; no sim camera elsewhere then)."""
    rc.spin_node(SimNode, args)


if __name__ == '__main__':
    main()
