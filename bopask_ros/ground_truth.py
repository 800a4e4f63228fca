"""The simulator's ground-truth message: what the camera saw, published with every sim frame.

Topic ``/bopask/sim/ground_truth``, type std_msgs/String carrying one JSON object per camera
frame (std_msgs/String so any rosbag2 tool, Foxglove and ``ros2 topic echo`` read it without
custom message packages). Units: metres; poses are 4x4 row-major nested lists; frames follow
REP 103 (the camera frame is the OPTICAL frame: x right, y down, z forward)::

    {
      "schema": "bopask/ground_truth/1",
      "stamp_ns": 1700000000123456789,   # == header.stamp of the colour, depth and
                                         #    camera_info messages of the same frame
      "camera_frame_id": "camera_color_optical_frame",
      "base_frame_id": "panda_link0",
      "width": 640, "height": 480,
      "K": [[fx, 0, cx], [0, fy, cy], [0, 0, 1]],
      "T_base_camera": 4x4,              # camera optical frame in the robot base frame
      "T_world_base": 4x4,               # robot base in the sim world (table top at z = 0)
      "robot": {"joint_names": [...], "positions": [...],   # radians (fingers: metres)
                "gripper_opening": 0.08},                    # metres between the fingers
      "objects": [
        {"obj_id": 5, "name": "006_mustard_bottle",          # BOP YCB-Video id and name
         "aliases": ["mustard bottle", ...],                 # phrases commands may use
         "T_camera_obj": 4x4,            # model frame in the camera optical frame (BOP
                                         #    T_m2c, metres)
         "T_base_obj": 4x4}              # model frame in the robot base frame
      ]
    }

``GroundTruthPublisher`` builds it from a ``sim_runtime.Frame`` (the camera node's ``sim``
backend calls it right after publishing the images, so the stamps match);
``parse_ground_truth`` reads it back (bag replay, scoring) and refuses malformed messages
with an error naming the key.
"""

from dataclasses import dataclass
import json

import numpy as np

from bopask_gen.core.transforms import invert_transform

GROUND_TRUTH_TOPIC = '/bopask/sim/ground_truth'
SCHEMA = 'bopask/ground_truth/1'
BASE_FRAME = 'panda_link0'


class GroundTruthError(ValueError):
    """A ground-truth message that cannot be read (the message names the key and source)."""


@dataclass
class GroundTruthObject:
    """One object of a ground-truth message."""

    obj_id: int
    name: str
    aliases: list
    T_camera_obj: np.ndarray
    T_base_obj: np.ndarray


@dataclass
class GroundTruth:
    """A parsed ground-truth message (see the module docstring)."""

    stamp_ns: int
    camera_frame_id: str
    base_frame_id: str
    width: int
    height: int
    K: np.ndarray
    T_base_camera: np.ndarray
    T_world_base: np.ndarray
    joint_names: list
    joint_positions: np.ndarray
    gripper_opening: float
    objects: list

    def aliases_by_index(self):
        """``{object index: [names]}`` for ``vlm_oracle.match_object``."""
        return {i: [o.name] + list(o.aliases) for i, o in enumerate(self.objects)}


def build_ground_truth(stamp_ns, K, width, height, T_world_camera, T_world_base, object_poses,
                       object_names, joint_names=(), joint_positions=(), gripper_opening=0.0,
                       camera_frame_id='camera_color_optical_frame', base_frame_id=BASE_FRAME,
                       aliases=None):
    """Return the ground-truth dict of one frame.

    ``object_poses``: ``[(obj_id, T_world_obj)]``; ``object_names``: ``{obj_id: name}``;
    ``aliases``: ``{obj_id: [phrases]}`` (default: none).
    """
    T_world_camera = np.asarray(T_world_camera, dtype=float)
    T_world_base = np.asarray(T_world_base, dtype=float)
    T_camera_world = invert_transform(T_world_camera)
    T_base_world = invert_transform(T_world_base)
    objects = []
    for obj_id, T_world_obj in object_poses:
        T_world_obj = np.asarray(T_world_obj, dtype=float)
        objects.append({
            'obj_id': int(obj_id), 'name': str(object_names.get(obj_id, f'obj_{obj_id:06d}')),
            'aliases': list((aliases or {}).get(obj_id, [])),
            'T_camera_obj': (T_camera_world @ T_world_obj).tolist(),
            'T_base_obj': (T_base_world @ T_world_obj).tolist(),
        })
    return {
        'schema': SCHEMA, 'stamp_ns': int(stamp_ns),
        'camera_frame_id': camera_frame_id, 'base_frame_id': base_frame_id,
        'width': int(width), 'height': int(height),
        'K': np.asarray(K, dtype=float).tolist(),
        'T_base_camera': (T_base_world @ T_world_camera).tolist(),
        'T_world_base': T_world_base.tolist(),
        'robot': {'joint_names': list(joint_names),
                  'positions': [float(x) for x in joint_positions],
                  'gripper_opening': float(gripper_opening)},
        'objects': objects,
    }


def _matrix(value, key, shape, source):
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError) as exc:
        raise GroundTruthError(f'{source}: key {key!r} is not numeric ({exc})') from exc
    if arr.shape != shape or not np.all(np.isfinite(arr)):
        raise GroundTruthError(f'{source}: key {key!r} must be a finite {shape} matrix, '
                               f'got shape {arr.shape}')
    return arr


def parse_ground_truth(text, source='ground-truth message'):
    """Parse the JSON text of a ground-truth message into a GroundTruth (or raise)."""
    try:
        data = json.loads(text)
    except (TypeError, ValueError) as exc:
        raise GroundTruthError(f'{source}: not JSON ({exc})') from exc
    if not isinstance(data, dict):
        raise GroundTruthError(f'{source}: top level must be a JSON object')
    if data.get('schema') != SCHEMA:
        raise GroundTruthError(f'{source}: key "schema" is {data.get("schema")!r}, '
                               f'expected {SCHEMA!r}')
    try:
        objects = []
        for i, obj in enumerate(data['objects']):
            where = f'objects[{i}]'
            objects.append(GroundTruthObject(
                obj_id=int(obj['obj_id']), name=str(obj['name']),
                aliases=[str(a) for a in obj.get('aliases', [])],
                T_camera_obj=_matrix(obj['T_camera_obj'], where + '.T_camera_obj', (4, 4),
                                     source),
                T_base_obj=_matrix(obj['T_base_obj'], where + '.T_base_obj', (4, 4), source)))
        robot = data.get('robot', {})
        return GroundTruth(
            stamp_ns=int(data['stamp_ns']), camera_frame_id=str(data['camera_frame_id']),
            base_frame_id=str(data['base_frame_id']), width=int(data['width']),
            height=int(data['height']), K=_matrix(data['K'], 'K', (3, 3), source),
            T_base_camera=_matrix(data['T_base_camera'], 'T_base_camera', (4, 4), source),
            T_world_base=_matrix(data['T_world_base'], 'T_world_base', (4, 4), source),
            joint_names=[str(n) for n in robot.get('joint_names', [])],
            joint_positions=np.asarray(robot.get('positions', []), dtype=float),
            gripper_opening=float(robot.get('gripper_opening', 0.0)), objects=objects)
    except KeyError as exc:
        raise GroundTruthError(f'{source}: missing key {exc.args[0]!r}') from exc
    except (TypeError, ValueError) as exc:
        if isinstance(exc, GroundTruthError):
            raise
        raise GroundTruthError(f'{source}: malformed value ({exc})') from exc


class GroundTruthPublisher:
    """Publishes the ground truth of each sim frame on ``/bopask/sim/ground_truth``.

    Used by the camera node's ``sim`` backend: ``publish(frame)`` right after the frame's
    images, with the same stamp.
    """

    def __init__(self, node, runtime, camera_frame_id='camera_color_optical_frame',
                 base_frame_id=BASE_FRAME, topic=GROUND_TRUTH_TOPIC):
        from std_msgs.msg import String

        from bopask_gen.generator.names import load_name_table
        self._string = String
        self.runtime = runtime
        self.camera_frame_id = camera_frame_id
        self.base_frame_id = base_frame_id
        self.names = load_name_table('ycbv')
        self._facts = None
        self.pub = node.create_publisher(String, topic, 5)

    def _world_facts(self):
        """(T_world_base, {obj_id: name}, width, height) of the current world, cached per world.

        Read once per world on the sim thread (MuJoCo data is not shared), not once per frame.
        """
        world = self.runtime.world
        if self._facts is None or self._facts[0] is not world:
            facts = self.runtime.call(lambda w: (w, w.T_world_base, {o.obj_id: o.name
                                                                     for o in w.objects},
                                                 w.width, w.height))
            self._facts = facts
        return self._facts[1:]

    def message(self, frame):
        """The ground-truth dict of a ``sim_runtime.Frame``."""
        from bopask_gen.sim.assets import YCBV_OBJECTS
        T_world_base, names, width, height = self._world_facts()
        names = {oid: names.get(oid, YCBV_OBJECTS.get(oid, f'obj_{oid:06d}'))
                 for oid, _ in frame.object_poses}
        state = self.runtime.joint_state()
        aliases = {oid: list(self.names.aliases(oid)) if self.names.has(oid) else []
                   for oid, _ in frame.object_poses}
        return build_ground_truth(
            frame.stamp_ns, frame.K, width, height, frame.T_world_camera, T_world_base,
            frame.object_poses, names,
            joint_names=state.names if state is not None else (),
            joint_positions=state.positions if state is not None else (),
            gripper_opening=state.gripper_opening if state is not None else 0.0,
            camera_frame_id=self.camera_frame_id, base_frame_id=self.base_frame_id,
            aliases=aliases)

    def publish(self, frame):
        """Publish the ground truth of ``frame``."""
        self.pub.publish(self._string(data=json.dumps(self.message(frame))))
