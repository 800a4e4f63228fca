"""backprojection node: VLM keypoints + aligned depth + K -> grasp pose and waypoints (base frame).

Subscribes to the keypoints JSON of the vlm node, the aligned depth image and camera_info
(kept in a short buffer and matched to the keypoints by stamp). The camera extrinsic comes
from tf2 when it is importable (a ROS install) and ``use_tf`` is set, else from the static
``extrinsic.*`` parameters (config/extrinsics.yaml). Publishes:

- ``/bopask/grasp_request`` (std_msgs/String, JSON): the executor's input -- grasp pose 4x4,
  opening width, waypoint surface points, timings;
- ``/bopask/grasp_pose`` (geometry_msgs/PoseStamped), ``/bopask/waypoints`` (nav_msgs/Path),
  ``/bopask/markers`` (visualization_msgs/MarkerArray) for RViz;
- one line per request or refusal on ``/bopask/status``.
"""

from collections import deque
import json
import time

import numpy as np
from rclpy.node import Node

from bopask_gen.core.transforms import (
    transform_from_xyz_quat_xyzw,
    xyz_quat_xyzw_from_transform,
)
from bopask_ros import ros_common as rc
from bopask_ros.backprojection import (
    BackprojectionError,
    BackprojectionParams,
    lift_grasp_and_waypoints,
    locate_place,
    warm_up,
)
from bopask_ros.image_conversion import camera_info_to_k, depth_image_to_metres

DEFAULTS = {
    'depth_window': 5,
    'grasp_depth': 0.03,
    'table_z': 0.0,
    'min_tcp_height': 0.015,
    'max_tilt_deg': 60.0,
    'tilt_tolerance_px': 1.5,
    'top_down_deg': 10.0,
    'top_radius': 0.04,
    'top_band': 0.004,
    'top_max_rise': 0.06,
    'max_top_slope_deg': 30.0,
    'pad_inset': 0.015,
    'depth_jump': 0.012,
    'min_object_height': 0.015,
    'max_object_height': 0.40,
    'target_scan_px': 200,
    'place_gap': 0.02,
    'place_max_gap': 0.05,
    'place_max_distance': 0.35,
    'place_cell': 0.015,
    'place_clear_radius': 0.05,
    'place_target_radius': 0.12,
    'place_max_reach': 0.70,
    'place_min_reach': 0.32,
    'place_lift_height': 0.15,
    'place_retreat_offset': 0.12,
    'arm_shoulder': [0.0, 0.0, 0.333],
    'arm_wrist_reach': 0.719,
    'arm_flange': 0.2104,
    'arm_wrist_offset': 0.088,
    'robot_exclusion_radius': 0.25,
    'cloud_stride': 4,
    'buffer_size': 30,
    'base_frame': 'panda_link0',
    'camera_frame': 'camera_color_optical_frame',
    'use_tf': True,
    'extrinsic.translation': [0.0, 0.0, 0.0],
    'extrinsic.rotation_xyzw': [0.0, 0.0, 0.0, 1.0],
}


def backprojection_params(values):
    """BackprojectionParams from node parameter values (a dict; missing keys: defaults)."""
    return rc.dataclass_from_parameters(BackprojectionParams, values)


def static_extrinsic(values):
    """T_base_camera (4x4) from the ``extrinsic.*`` parameter values (the no-tf2 extrinsic)."""
    return transform_from_xyz_quat_xyzw(values['extrinsic.translation'],
                                        values['extrinsic.rotation_xyzw'])


class BackprojectionNode(Node):
    """Thin ROS shell over ``bopask_ros.backprojection.lift_keypoints``."""

    def __init__(self, **kwargs):
        super().__init__('backprojection_node', **kwargs)
        self.p = rc.declare(self, DEFAULTS)
        self.params = backprojection_params(self.p)
        self.status = rc.StatusPublisher(self, 'backprojection')
        self.T_static = static_extrinsic(self.p)
        self.tf_buffer = self._make_tf_buffer() if self.p['use_tf'] else None
        self.depth_buffer = deque(maxlen=int(self.p['buffer_size']))
        self.info_buffer = deque(maxlen=int(self.p['buffer_size']))

        from geometry_msgs.msg import PoseStamped
        from nav_msgs.msg import Path
        from sensor_msgs.msg import CameraInfo, Image
        from std_msgs.msg import String
        from visualization_msgs.msg import MarkerArray
        self.create_subscription(Image, rc.DEPTH_TOPIC, self.on_depth, 10)
        self.create_subscription(CameraInfo, rc.INFO_TOPIC, self.on_info, 10)
        self.create_subscription(String, rc.KEYPOINTS_TOPIC, self.on_keypoints, 10)
        self.request_pub = self.create_publisher(String, rc.GRASP_REQUEST_TOPIC, 10)
        self.pose_pub = self.create_publisher(PoseStamped, rc.GRASP_POSE_TOPIC, 10)
        self.path_pub = self.create_publisher(Path, rc.WAYPOINTS_TOPIC, 10)
        self.marker_pub = self.create_publisher(MarkerArray, rc.MARKERS_TOPIC, 10)
        self.get_logger().info(
            'extrinsic from ' + ('tf2' if self.tf_buffer is not None else 'static parameters'))
        # The first lift of a process pays for imports: pay it here, not on a command.
        self.get_logger().info(f'back-projection warmed up in {warm_up(self.params):.0f} ms')

    def on_depth(self, msg):
        """Buffer aligned depth images for stamp matching."""
        self.depth_buffer.append(msg)

    def on_info(self, msg):
        """Buffer camera_info messages for stamp matching."""
        self.info_buffer.append(msg)

    def _make_tf_buffer(self):
        try:
            import tf2_ros
        except ImportError:
            return None  # pip-only install: the static parameters are the extrinsic
        buffer = tf2_ros.Buffer()
        self._tf_listener = tf2_ros.TransformListener(buffer, self)
        return buffer

    def extrinsic(self, camera_frame, stamp):
        """Return T_base_camera (4x4): tf2 when available, else the static parameters."""
        if self.tf_buffer is None:
            return self.T_static
        from rclpy.time import Time
        tf = self.tf_buffer.lookup_transform(self.p['base_frame'], camera_frame,
                                             Time.from_msg(stamp))
        t, q = tf.transform.translation, tf.transform.rotation
        return transform_from_xyz_quat_xyzw([t.x, t.y, t.z], [q.x, q.y, q.z, q.w])

    def _match(self, buffer, stamp_ns, exact):
        best = None
        for msg in buffer:
            dt = abs(rc.stamp_to_ns(msg.header.stamp) - stamp_ns)
            if best is None or dt < best[0]:
                best = (dt, msg)
        if best is None or (exact and best[0] != 0):
            return None
        return best[1]

    def on_keypoints(self, msg):
        """Lift one keypoint set; publish the grasp request or a refusal."""
        received = rc.wall_time()
        try:
            kp = json.loads(msg.data)
            command_id = kp.get('command_id')
            stamp_ns = int(kp['stamp_ns'])
            grasp_px = np.asarray(kp['grasp_px'], dtype=float)
            waypoints_px = np.asarray(kp['waypoints_px'], dtype=float)
        except (ValueError, KeyError, TypeError) as exc:
            self.status(f'refused: unreadable keypoints message ({exc})', 'error')
            return
        depth_msg = self._match(self.depth_buffer, stamp_ns, exact=True)
        info_msg = self._match(self.info_buffer, stamp_ns, exact=False)
        if depth_msg is None or info_msg is None:
            self.status(f'refused command {command_id}: no aligned depth image with the '
                        f'keypoints stamp {stamp_ns} ns (buffer {len(self.depth_buffer)})',
                        'error')
            return
        try:
            depth_m = depth_image_to_metres(depth_msg)
            K = camera_info_to_k(info_msg)
            T_bc = self.extrinsic(depth_msg.header.frame_id or self.p['camera_frame'],
                                  depth_msg.header.stamp)
            # Timed: the back-projection itself (message decoding is not part of it), as wall
            # time and as this thread's CPU time (which excludes waiting for the GIL while
            # other nodes of the process run); then, apart, the search for a place.
            t0, c0 = time.perf_counter(), time.thread_time()
            target = lift_grasp_and_waypoints(grasp_px, waypoints_px, depth_m, K, T_bc,
                                              self.params)
            elapsed_ms = (time.perf_counter() - t0) * 1000.0
            cpu_ms = (time.thread_time() - c0) * 1000.0
            locate_place(target, waypoints_px, depth_m, K, T_bc, self.params)
            place_ms = (time.perf_counter() - t0) * 1000.0 - elapsed_ms
        except (BackprojectionError, ValueError) as exc:
            self.status(f'refused command {command_id}: {exc}', 'error')
            return
        except Exception as exc:  # noqa: BLE001 - tf2 lookup errors have no common base
            self.status(f'refused command {command_id}: extrinsic lookup failed ({exc})',
                        'error')
            return
        timing = dict(kp.get('timing', {}), backprojection_ms=elapsed_ms,
                      backprojection_cpu_ms=cpu_ms, place_search_ms=place_ms,
                      keypoints_received=received)
        request = {
            'command_id': command_id, 'command': kp.get('command'),
            'object': kp.get('object'), 'target': kp.get('target'),
            'frame_id': self.p['base_frame'], 'stamp_ns': stamp_ns,
            'grasp': {'T': target.T_base_tcp, 'width': target.width},
            'surface_point': target.surface_point, 'waypoints': target.waypoints,
            'target_point': target.target_point, 'waypoint_rays': target.waypoint_rays,
            'place_point': target.place_point, 'scene_top_z': target.scene_top_z,
            'timing': timing,
        }
        request['timing']['request_sent'] = rc.wall_time()
        self.request_pub.publish(self._string(rc.dumps(request)))
        self._publish_viz(target, depth_msg.header.stamp)
        p = target.position
        self.status(f'command {command_id}: grasp at ({p[0]:.3f}, {p[1]:.3f}, {p[2]:.3f}) m, '
                    f'yaw {np.degrees(target.yaw):.0f} deg, tilt {target.tilt_deg:.0f} deg, '
                    f'width {target.width * 100:.1f} cm, '
                    f'{len(target.waypoints)} waypoints; back-projection {elapsed_ms:.2f} ms '
                    f'({cpu_ms:.2f} ms CPU), place search {place_ms:.2f} ms')

    def _string(self, text):
        from std_msgs.msg import String
        return String(data=text)

    def _pose(self, T):
        from geometry_msgs.msg import Pose
        xyz, q = xyz_quat_xyzw_from_transform(T)
        pose = Pose()
        pose.position.x, pose.position.y, pose.position.z = map(float, xyz)
        o = pose.orientation
        o.x, o.y, o.z, o.w = map(float, q)
        return pose

    def _publish_viz(self, target, stamp):
        from geometry_msgs.msg import Point, PoseStamped
        from nav_msgs.msg import Path
        from std_msgs.msg import Header
        from visualization_msgs.msg import Marker, MarkerArray
        header = Header(stamp=stamp, frame_id=self.p['base_frame'])
        self.pose_pub.publish(PoseStamped(header=header, pose=self._pose(target.T_base_tcp)))
        path = Path(header=header)
        for p in target.waypoints:
            T = np.eye(4)
            T[:3, 3] = p
            path.poses.append(PoseStamped(header=header, pose=self._pose(T)))
        self.path_pub.publish(path)
        arrow = Marker(header=header, ns='bopask_grasp', id=0, type=Marker.ARROW,
                       action=Marker.ADD)
        start = target.position - 0.1 * target.approach
        arrow.points = [Point(x=float(start[0]), y=float(start[1]), z=float(start[2])),
                        Point(x=float(target.position[0]), y=float(target.position[1]),
                              z=float(target.position[2]))]
        arrow.scale.x, arrow.scale.y, arrow.scale.z = 0.01, 0.02, 0.02
        arrow.color.g, arrow.color.a = 1.0, 1.0
        line = Marker(header=header, ns='bopask_waypoints', id=1, type=Marker.LINE_STRIP,
                      action=Marker.ADD)
        line.points = [Point(x=float(p[0]), y=float(p[1]), z=float(p[2]))
                       for p in target.waypoints]
        line.scale.x = 0.008
        line.color.r, line.color.g, line.color.a = 1.0, 0.55, 1.0
        line.pose.orientation.w = arrow.pose.orientation.w = 1.0
        self.marker_pub.publish(MarkerArray(markers=[arrow, line]))


def main(args=None):
    """Run the node alone (``ros2 run bopask_ros backprojection_node``)."""
    rc.spin_node(BackprojectionNode, args)


if __name__ == '__main__':
    main()
