"""The ``oracle`` VLM backend: answers from the simulator's ground truth, as model text.

It answers exactly as the training data would: the simulated view (RGB, depth, exact object
poses and masks) is written as a one-image BOP scene with the simulator's BOP writer, read
back with the BOP reader, and annotated by the generator itself (``generator.scene``,
``generator.grasps.top_grasps``, ``generator.trajectory.plan_trajectory``). The points are
written with ``core.answer_format.format_points`` and the vlm node parses them with the same
``parse_points`` as a real model's output. So it tests everything but the model; logs and
status lines name it ``oracle``.

Objects less visible than the generator's ``min_visib`` (15 %) are refused, as the generator
asks nothing about them.

Answers depend on the scene and the command only, as a model decoding greedily: the random
draws of the annotators (grasp sampling, path planning) are seeded from the base ``seed``, the
objects in the scene (their ids) and the command's text, not from what was asked before -- a
replayed episode gets the answers of its first run. (Not from the objects' poses: settling
objects move by fractions of a millimetre with the wall-clock timing of a run.)

Grasp choice: among the generator's top collision-free grasps whose centre pixel lies on the
object's visible mask (a model points at what it sees), the one whose approach is
nearest straight down (ties keep the generator's ranking). If even that one is tilted more
than ``max_tilt_deg`` (the back-projection's limit too) the oracle refuses: a grasp from the
side of an object standing on the table is out of the arm's reach.
"""

import itertools
from pathlib import Path
import tempfile
import threading
import zlib

import numpy as np

from bopask_gen.core.answer_format import format_points
from bopask_gen.core.camera import project_points
from bopask_gen.core.transforms import invert_transform

TILT_TIE_DEG = 10.0
'''Grasps within this of the least tilted count as equally upright (the best-scored wins).'''


class OracleError(RuntimeError):
    """The oracle cannot answer (unknown object, no grasp, no path)."""


def choose_grasp(tilts, max_tilt, tie_deg=TILT_TIE_DEG):
    """Index of the grasp to answer with, of grasps in the generator's score order.

    The best-scored (nearest the centre of mass, most antipodal) of those within ``tie_deg``
    of the least tilted: a grasp 1 degree more upright is no better, one 3 cm off the centre
    of mass slips out when lifted. Raises OracleError when even the least tilted exceeds
    ``max_tilt`` (radians; the generator's 60 degrees, to rounding).
    """
    least = min(tilts)
    if least > max_tilt + 1e-3:
        raise OracleError(f"the generator's grasps of the object all approach from the side "
                          f'(least tilt {np.degrees(least):.0f} deg > '
                          f'{np.degrees(max_tilt):.0f} deg)')
    return next(i for i, t in enumerate(tilts) if t <= least + np.deg2rad(tie_deg))


def objects_digest(obj_ids):
    """An int from the ids of a scene's objects (in the simulator's order)."""
    return zlib.crc32(np.asarray(obj_ids, dtype=np.int64).tobytes())


TASK_CODES = {'grasp': 1, 'trajectory': 2}
'''Per-question part of an answer's seed.'''


def match_object(phrase, candidates):
    """Return the key of the candidate whose names match ``phrase``; raise OracleError.

    ``candidates``: ``{key: [names...]}``. Exact (case-insensitive, article-free) matches
    win over containment either way; ambiguity is an error.
    """
    def norm(s):
        words = str(s).lower().replace('-', ' ').split()
        return ' '.join(w for w in words if w not in ('the', 'a', 'an'))
    p = norm(phrase)
    exact = [k for k, names in candidates.items() if any(norm(n) == p for n in names)]
    if len(exact) == 1:
        return exact[0]
    loose = [k for k, names in candidates.items()
             if any(norm(n) in p or p in norm(n) for n in names)]
    if len(exact) > 1 or len(loose) > 1:
        raise OracleError(f'{phrase!r} matches several objects in the scene')
    if loose:
        return loose[0]
    raise OracleError(f'no object called {phrase!r} in the scene')


class OracleBackend:
    """Ground-truth answers through the generator's annotators (see the module docstring)."""

    name = 'oracle'

    def __init__(self, runtime, coords='pixel', seed=0, max_tilt_deg=60.0, workdir=None,
                 grasp_candidates=10, path_attempts=3, hidden_grasp_candidates=120):
        from bopask_gen.generator.build import BuildConfig
        from bopask_gen.generator.names import load_name_table
        self.runtime = runtime
        self.coords = coords
        self.seed = int(seed)
        self.rng = np.random.default_rng(seed)
        self._digest = 0          # of the cached scene's objects (``objects_digest``)
        self.max_tilt = np.deg2rad(max_tilt_deg)
        self.grasp_candidates = int(grasp_candidates)
        self.hidden_grasp_candidates = int(hidden_grasp_candidates)
        self.path_attempts = int(path_attempts)
        self.names = load_name_table('ycbv')
        self.min_visib = BuildConfig.min_visib
        self._dir = Path(workdir or tempfile.mkdtemp(prefix='bopask_oracle_'))
        self._scene_ids = itertools.count()
        self._models_written = False
        self._cache = {}
        self._lock = threading.Lock()

    # ---------------------------------------------------------------- scene from the sim
    def _write_models(self):
        from bopask_gen.core.bop_writer import write_camera_json, write_models
        from bopask_gen.sim.assets import object_mesh, YCBV_OBJECTS
        write_models(self._dir, {oid: object_mesh(oid) for oid in YCBV_OBJECTS})
        world = self.runtime.world
        write_camera_json(self._dir, world.K, world.width, world.height)
        self._models_written = True

    def _snapshot(self, frame):
        """Masks and object poses of the current world state (rendered on the sim thread)."""
        def grab(world):
            seg = world.render_segmentation()
            return [{'obj_id': o.obj_id, 'T_world_obj': world.object_pose(o.index),
                     'mask': world.render_object_mask(o.index), 'mask_visib': seg == o.index}
                    for o in world.objects]
        return self.runtime.call(grab)

    def scene_for(self, frame):
        """Return the generator's SceneGeometry of a sim Frame (cached per frame)."""
        from bopask_gen.core.bop import BopDataset
        from bopask_gen.core.bop_writer import BopSceneWriter
        from bopask_gen.generator.scene import build_scene_geometry
        key = frame.stamp_ns
        if key in self._cache:
            return self._cache[key]
        if not self._models_written:
            self._write_models()
        T_cw = invert_transform(frame.T_world_camera)
        instances = []
        snapshot = self._snapshot(frame)
        self._digest = objects_digest([i['obj_id'] for i in snapshot])
        self.rng = self._rng(self._digest)
        for inst in snapshot:
            instances.append({'obj_id': inst['obj_id'], 'T_m2c': T_cw @ inst['T_world_obj'],
                              'mask': inst['mask'], 'mask_visib': inst['mask_visib']})
        scene_id = next(self._scene_ids)
        with BopSceneWriter(self._dir, 'oracle', scene_id) as writer:
            writer.add_frame(0, frame.rgb, frame.depth_m, frame.K, frame.T_world_camera,
                             instances)
        dataset = BopDataset(self._dir)
        bop_frame = dataset.scene('oracle', scene_id).frame(0)
        scene = build_scene_geometry(dataset, bop_frame, rng=self.rng)
        self._cache = {key: scene}  # one frame at a time is enough
        return scene

    def _rng(self, *parts):
        """The random generator of a scene (``parts``: its digest) or of one answer."""
        return np.random.default_rng([self.seed, *parts])

    def _object(self, scene, phrase):
        candidates = {o.gt_index: self.names.aliases(o.obj_id) for o in scene.objects}
        obj = scene.object_by_gt(match_object(phrase, candidates))
        # As the generator: no question about an object the image hardly shows (a model
        # cannot point at what it does not see).
        if obj.visib_fract is not None and obj.visib_fract < self.min_visib:
            raise OracleError(f'{phrase!r} is {obj.visib_fract:.0%} visible in the image '
                              f'(the generator asks about objects at least '
                              f'{self.min_visib:.0%} visible)')
        return obj

    # ---------------------------------------------------------------- answers
    def grasp_points(self, scene, obj):
        """(5, 2) pixels of the chosen ground-truth grasp; raise OracleError if none."""
        from bopask_gen.evaluation.metrics import points_in_mask
        from bopask_gen.generator.grasps import top_grasps
        from bopask_gen.generator.scene import mask_visib
        grasps = top_grasps(scene, obj, self.rng, k=self.grasp_candidates)
        if not grasps:
            raise OracleError('the generator finds no collision-free grasp of the object')
        # A model points at what it sees: the grasp centre must be on the object's visible
        # part (a grasp behind an occluder would be lifted onto the occluder).
        visible = mask_visib(scene, obj)

        def centres_seen(grasps):
            seen = points_in_mask([g.keypoints_px[0] for g in grasps], visible)
            return [g for g, ok in zip(grasps, seen) if ok]
        seen = centres_seen(grasps)
        if not seen and self.hidden_grasp_candidates > self.grasp_candidates:
            # A partly hidden object: its best-scored grasps may all be on the hidden side;
            # more of the generator's grasps, before refusing.
            seen = centres_seen(top_grasps(scene, obj, self.rng,
                                           k=self.hidden_grasp_candidates))
        if not seen:
            raise OracleError("the centres of all the generator's grasps of the object are "
                              'hidden from the camera')
        grasps = seen
        down = -scene.up_cam
        tilts = [np.arccos(np.clip(g.T_cam[:3, 2] @ down, -1.0, 1.0)) for g in grasps]
        return grasps[choose_grasp(tilts, self.max_tilt)].keypoints_px

    def trajectory_points(self, scene, obj_a, obj_b):
        """(M, 2) pixels of the generator's path from A to B; raise OracleError if none."""
        from bopask_gen.generator.trajectory import plan_trajectory
        # The generator's RRT has a time cap, so a loaded machine can miss a path that
        # exists: ask again (fresh random draws) before giving up.
        for _ in range(self.path_attempts):
            # The robot needs a free 3D path; the image-metric rule is for datasets.
            path = plan_trajectory(scene, obj_a, obj_b, self.rng, clear_of_masks=False)
            if path is not None and len(path) >= 2:
                return project_points(path, scene.K)
        raise OracleError(f'the generator finds no collision-free path between the objects '
                          f'({self.path_attempts} attempts)')

    def answer(self, image_rgb, question, request):
        """Return the model text answering ``request['task']`` for the request's frame."""
        with self._lock:
            frame = request.get('sim_frame')
            if frame is None:
                raise OracleError('the oracle needs the simulator frame the image came from')
            scene = self.scene_for(frame)
            command = request['command']
            self.rng = self._rng(self._digest, zlib.crc32(str(command.text).encode()),
                                 TASK_CODES.get(request.get('task'), 0))
            obj = self._object(scene, command.object_name)
            if request.get('task') == 'grasp':
                pts = self.grasp_points(scene, obj)
            elif request.get('task') == 'trajectory':
                target = self._object(scene, command.target_name)
                if target.gt_index == obj.gt_index:
                    raise OracleError('the object and the target are the same object')
                pts = self.trajectory_points(scene, obj, target)
            else:
                raise OracleError(f'the oracle answers grasp and trajectory questions, not '
                                  f'{request.get("task")!r}')
            return format_points(pts, self.coords, scene.width, scene.height)
