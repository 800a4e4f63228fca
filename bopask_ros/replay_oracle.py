"""The oracle without a live simulator: answers from a recorded ground-truth topic and images.

``vlm_oracle.OracleBackend`` reads three things from the ``SimRuntime`` of the sim node:
``frame_at(stamp_ns)`` (the frame an image came from: rgb, depth, K, camera pose),
``world`` (K and image size) and ``call(fn)`` (run ``fn(world)`` to render the object
masks). ``GroundTruthRuntime`` offers the same three from recorded messages: the colour and
aligned depth images plus the ground-truth message (``ground_truth.py``) of the same stamp.
For the masks it rebuilds the recorded scene in MuJoCo (the same YCB-V meshes placed at the
recorded poses, the camera at the recorded pose, the arm at the recorded joint angles) and
renders it on its own thread -- the same renderer that made the recording, so the masks
match. ``bopask replay`` registers it with ``sim_runtime.set_runtime`` before it starts the
vlm node, so the unchanged vlm node and oracle run on it.

``SeededOracleBackend`` is the oracle made a pure function of (frame, command): its random
generator is re-seeded from the frame stamp and the command for every command, so the
replayed graph and the scorer's reference (``bag_replay``) pick the same grasp and path. It
can also be deliberately wrong (``offset_px``: every keypoint shifted by (du, dv) pixels;
``rotate_deg``: the grasp keypoints rotated about their centre) to check that the scores
see the error.
"""

from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
import threading
import time
import zlib

import numpy as np

from bopask_ros.vlm_oracle import OracleBackend


class GroundTruthRuntime:
    """A SimRuntime stand-in for the oracle, built from recorded messages (module docstring)."""

    def __init__(self, history=120, wait_s=2.0):
        self.history = int(history)
        self.wait_s = float(wait_s)
        self._lock = threading.Lock()
        self._entries = OrderedDict()   # stamp_ns -> {'gt':, 'rgb':, 'depth_m':}
        self._seq = 0
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix='bopask-gt-world')
        self._world = None
        self._world_key = None

    # ---------------------------------------------------------------- feeding
    def _entry(self, stamp_ns):
        with self._lock:
            entry = self._entries.get(stamp_ns)
            if entry is None:
                entry = self._entries[stamp_ns] = {}
                while len(self._entries) > self.history:
                    self._entries.popitem(last=False)
            return entry

    def add_ground_truth(self, gt):
        """Store a parsed ``ground_truth.GroundTruth``."""
        self._entry(int(gt.stamp_ns))['gt'] = gt

    def add_color(self, stamp_ns, rgb):
        """Store a colour image (H, W, 3 uint8 RGB)."""
        self._entry(int(stamp_ns))['rgb'] = rgb

    def add_depth(self, stamp_ns, depth_m):
        """Store an aligned depth image in metres."""
        self._entry(int(stamp_ns))['depth_m'] = depth_m

    def ground_truth_at(self, stamp_ns):
        """The GroundTruth recorded with this stamp (None if absent)."""
        with self._lock:
            return self._entries.get(int(stamp_ns), {}).get('gt')

    # ---------------------------------------------------------------- SimRuntime interface
    @property
    def world(self):
        """The rebuilt MuJoCo world of the last frame asked for (None before)."""
        return self._world

    def call(self, fn, timeout=120.0):
        """Run ``fn(world)`` on the rendering thread and return its result."""
        return self._worker.submit(lambda: fn(self._world)).result(timeout=timeout)

    def frame_at(self, stamp_ns):
        """The recorded frame with this stamp as a ``sim_runtime.Frame`` (None if incomplete).

        The rebuilt world is posed as in that frame, so ``call`` renders what it showed. The
        ground truth of a frame arrives a little after its images (it is published after
        them): an incomplete frame is waited for up to ``wait_s`` seconds.
        """
        from bopask_ros.sim_runtime import Frame
        end = time.monotonic() + self.wait_s
        while True:
            with self._lock:
                entry = dict(self._entries.get(int(stamp_ns), {}))
            if {'gt', 'rgb', 'depth_m'} <= set(entry):
                break
            if time.monotonic() >= end:
                return None
            time.sleep(0.01)
        gt = entry['gt']
        self.call(lambda _: self._pose_world(gt))
        self._seq += 1
        return Frame(stamp_ns=int(stamp_ns), rgb=entry['rgb'], depth_m=entry['depth_m'],
                     K=gt.K.copy(), T_world_camera=gt.T_world_base @ gt.T_base_camera,
                     object_poses=[(o.obj_id, gt.T_world_base @ o.T_base_obj)
                                   for o in gt.objects], seq=self._seq)

    def latest_frame(self):
        """The newest complete recorded frame (None if there is none)."""
        with self._lock:
            stamps = [s for s, e in self._entries.items() if {'gt', 'rgb', 'depth_m'} <= set(e)]
        return self.frame_at(stamps[-1]) if stamps else None

    def close(self):
        """Free the renderer and stop the thread."""
        def shut(_):
            if self._world is not None:
                self._world.close()
                self._world = None
        try:
            self.call(shut, timeout=10.0)
        finally:
            self._worker.shutdown(wait=True)

    # ---------------------------------------------------------------- rendering thread
    def _pose_world(self, gt):
        from bopask_gen.sim import robot
        from bopask_gen.sim.world import Placement, World
        T_world_obj = [gt.T_world_base @ o.T_base_obj for o in gt.objects]
        fovy = float(np.degrees(2.0 * np.arctan(0.5 * gt.height / gt.K[1, 1])))
        base = gt.T_world_base
        key = (tuple(o.obj_id for o in gt.objects), gt.width, gt.height, round(fovy, 6),
               tuple(np.round(base[:3, 3], 6)))
        if self._world is None or self._world_key != key:
            if self._world is not None:
                self._world.close()
            yaw = float(np.arctan2(base[1, 0], base[0, 0]))
            self._world = World(placements=[Placement(o.obj_id, T) for o, T in
                                            zip(gt.objects, T_world_obj)],
                                settle=False, width=gt.width, height=gt.height, fovy_deg=fovy,
                                base_pos=tuple(base[:3, 3]), base_yaw=yaw)
            self._world_key = key
        world = self._world
        for i, T in enumerate(T_world_obj):
            world.set_object_pose(i, T)
        names = list(gt.joint_names)
        if all(n in names for n in robot.ARM_JOINTS):
            q = [gt.joint_positions[names.index(n)] for n in robot.ARM_JOINTS]
            world.reset_robot(q, gt.gripper_opening)
        world.set_camera_pose(gt.T_world_base @ gt.T_base_camera)


def command_seed(seed, stamp_ns, command_text):
    """Seed sequence of one command on one frame (the same in the graph and the scorer)."""
    stamp = int(stamp_ns)
    return [int(seed), stamp & 0xFFFFFFFF, (stamp >> 32) & 0xFFFFFFFF,
            zlib.crc32(str(command_text).encode())]


def perturb_points(points_px, offset_px=(0.0, 0.0), rotate_deg=0.0, centre=None):
    """Rotate pixels about ``centre`` (default: the first point) by ``rotate_deg``; shift."""
    pts = np.asarray(points_px, dtype=float)
    if rotate_deg:
        c = pts[0] if centre is None else np.asarray(centre, dtype=float)
        a = np.deg2rad(rotate_deg)
        R = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        pts = (pts - c) @ R.T + c
    return pts + np.asarray(offset_px, dtype=float)


class SeededOracleBackend(OracleBackend):
    """The oracle, deterministic per (frame, command), optionally perturbed (module docstring).

    ``last_grasp`` keeps the generator grasp of the last grasp answer (its ``T_cam`` is the
    3D ground truth the scorer compares the back-projected grasp with).
    """

    name = 'oracle'

    def __init__(self, runtime, offset_px=(0, 0), rotate_deg=0.0, **kwargs):
        super().__init__(runtime, **kwargs)
        self.seed = int(kwargs.get('seed', 0))
        self.offset_px = np.asarray(offset_px, dtype=float).reshape(2)
        self.rotate_deg = float(rotate_deg)
        self.last_grasp = None
        perturbed = bool(np.any(self.offset_px) or self.rotate_deg)
        self.label = 'oracle' + (f' perturbed (offset {self.offset_px.tolist()} px, rotation '
                                 f'{self.rotate_deg:g} deg)' if perturbed else '')

    def answer(self, image_rgb, question, request):
        """As OracleBackend.answer, re-seeded at each command's grasp question."""
        frame, command = request.get('sim_frame'), request.get('command')
        if request.get('task') == 'grasp' and frame is not None and command is not None:
            with self._lock:
                self.rng = np.random.default_rng(command_seed(self.seed, frame.stamp_ns,
                                                              command.text))
                self._cache = {}  # the scene's grasp candidates depend on the rng too
        return super().answer(image_rgb, question, request)

    def _rng(self, *parts):
        # Seeded per (frame stamp, command) in ``answer`` instead: a bag's frames keep their
        # stamps, and the graph and the scorer see the same frames.
        return self.rng

    def grasp_points(self, scene, obj):
        """OracleBackend's grasp (remembered in ``last_grasp``), perturbed."""
        from bopask_gen.generator.grasps import top_grasps
        pts = super().grasp_points(scene, obj)
        # Which generator grasp that was: the candidates and their collision checks are
        # cached per scene, so asking again draws nothing from the rng.
        self.last_grasp = next((g for g in top_grasps(scene, obj, self.rng,
                                                      k=self.grasp_candidates)
                                if np.allclose(g.keypoints_px, pts)), None)
        return perturb_points(pts, self.offset_px, self.rotate_deg)

    def trajectory_points(self, scene, obj_a, obj_b):
        """OracleBackend's path, shifted by ``offset_px``."""
        return perturb_points(super().trajectory_points(scene, obj_a, obj_b), self.offset_px)
