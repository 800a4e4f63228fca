"""Small rclpy helpers shared by the nodes: YAML parameters, stamps, status lines, topics."""

import dataclasses
import json
import os
from pathlib import Path
import time

import yaml

PACKAGE_DIR = Path(__file__).resolve().parent
CONFIG_DIR = PACKAGE_DIR.parent / 'config'
DEFAULT_CONFIG = 'pick_place.yaml'

# Topic names (realsense-ros defaults for the camera, so a real camera drops in).
COLOR_TOPIC = '/camera/camera/color/image_raw'
DEPTH_TOPIC = '/camera/camera/aligned_depth_to_color/image_raw'
INFO_TOPIC = '/camera/camera/color/camera_info'
COMMAND_TOPIC = '/bopask/command'
STATUS_TOPIC = '/bopask/status'
BUSY_TOPIC = '/bopask/busy'
KEYPOINTS_TOPIC = '/bopask/vlm/keypoints'
OVERLAY_TOPIC = '/bopask/vlm/overlay'
GRASP_REQUEST_TOPIC = '/bopask/grasp_request'
GRASP_POSE_TOPIC = '/bopask/grasp_pose'
WAYPOINTS_TOPIC = '/bopask/waypoints'
MARKERS_TOPIC = '/bopask/markers'
JOINT_STATES_TOPIC = '/joint_states'
ARM_TRAJECTORY_TOPIC = '/panda_arm_controller/joint_trajectory'
GRIPPER_TOPIC = '/bopask/gripper/command'


def config_path(name=DEFAULT_CONFIG):
    """Return the path of a config file: as given if it exists, else under config/.

    On a colcon install the share directory is used when the source tree is absent.
    """
    path = Path(name)
    if path.is_file():
        return path
    for folder in (CONFIG_DIR, _share_config_dir()):
        if folder is not None and (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f'config file {name!r} not found (looked in {CONFIG_DIR})')


def _share_config_dir():
    try:
        from ament_index_python.packages import get_package_share_directory
        return Path(get_package_share_directory('bopask_ros')) / 'config'
    except Exception:  # noqa: BLE001 - not installed with colcon: no share directory
        return None


def load_node_parameters(path, node_name):
    """Return ``{name: value}`` for ``node_name`` from a ROS 2 parameter YAML file.

    Reads the standard layout (``node_name: {ros__parameters: {...}}``, plus ``/**``
    wildcard sections merged first), as ``--params-file`` would.
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ValueError(f'{path}: not valid YAML ({exc})') from exc
    if not isinstance(data, dict):
        raise ValueError(f'{path}: top level must be a mapping of node names')
    params = {}
    for key in ('/**', node_name, '/' + node_name):
        section = data.get(key)
        if section is None:
            continue
        if not isinstance(section, dict) or 'ros__parameters' not in section:
            raise ValueError(f'{path} [key {key!r}]: needs a ros__parameters mapping')
        params.update(_flatten(section['ros__parameters'] or {}))
    return params


def _flatten(mapping, prefix=''):
    out = {}
    for key, value in mapping.items():
        name = f'{prefix}{key}'
        if isinstance(value, dict):
            out.update(_flatten(value, name + '.'))
        else:
            out[name] = value
    return out


def parameter_overrides(values):
    """Turn ``{name: value}`` into rclpy Parameter objects for ``Node(parameter_overrides=)``."""
    from rclpy.parameter import Parameter
    return [Parameter(name, value=value) for name, value in values.items()]


def declare(node, defaults):
    """Declare parameters with defaults and return ``{name: value}`` (overrides applied)."""
    out = {}
    for name, default in defaults.items():
        node.declare_parameter(name, default)
        out[name] = node.get_parameter(name).value
    return out


def dataclass_from_parameters(cls, values):
    """An instance of the dataclass ``cls`` from node parameter values (``{name: value}``).

    Fields missing from ``values`` keep their defaults; lists become tuples and scalars take
    the type of the field's default (a YAML ``1`` for a float field is ``1.0``).
    """
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in values:
            continue
        value = values[f.name]
        if isinstance(value, list):
            value = tuple(value)
        elif isinstance(f.default, (bool, int, float, str)):
            value = type(f.default)(value)
        kwargs[f.name] = value
    return cls(**kwargs)


def stamp_to_ns(stamp):
    """builtin_interfaces/Time -> integer nanoseconds."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def ns_to_stamp(ns):
    """Integer nanoseconds -> builtin_interfaces/Time."""
    from builtin_interfaces.msg import Time
    return Time(sec=int(ns // 1_000_000_000), nanosec=int(ns % 1_000_000_000))


class StatusPublisher:
    """Publishes one human-readable line per step or refusal on /bopask/status (and logs it)."""

    def __init__(self, node, source):
        from std_msgs.msg import String
        self._node = node
        self._source = source
        self._msg_type = String
        self._pub = node.create_publisher(String, STATUS_TOPIC, 50)

    def __call__(self, text, level='info'):
        """Publish ``[source] text`` and log it at ``level``."""
        line = f'[{self._source}] {text}'
        self._pub.publish(self._msg_type(data=line))
        # rclpy forbids one call site logging at several severities: one call per level.
        logger = self._node.get_logger()
        if level == 'error':
            logger.error(text)
        elif level == 'warn':
            logger.warning(text)
        else:
            logger.info(text)
        return line


def dumps(obj):
    """JSON for message payloads (numpy arrays become lists)."""
    import numpy as np

    def default(o):
        if isinstance(o, np.ndarray):
            return o.tolist()
        if isinstance(o, (np.floating, np.integer)):
            return o.item()
        raise TypeError(f'not JSON serialisable: {type(o)}')
    return json.dumps(obj, default=default)


def wall_time():
    """Wall-clock seconds shared by all processes on the machine (latency bookkeeping)."""
    return time.time()


def domain_id():
    """The ROS_DOMAIN_ID in use (0 when unset)."""
    return int(os.environ.get('ROS_DOMAIN_ID', '0') or 0)


def spin_node(node_class, args=None, multithreaded=False):
    """Body of every node's ``main``: init rclpy, spin one node until Ctrl-C, clean up."""
    import rclpy
    from rclpy.executors import MultiThreadedExecutor, SingleThreadedExecutor

    rclpy.init(args=args)
    node = node_class()
    executor = MultiThreadedExecutor() if multithreaded else SingleThreadedExecutor()
    executor.add_node(node)
    try:
        executor.spin()
    except KeyboardInterrupt:
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
