"""``bopask-gen grasp-check``: execute the generator's top grasp of each object in physics.

For the first image of every scene, the generator's scene geometry
(``generator.scene.build_scene_geometry``) gives the table frame (z up, table at z = 0) and
``generator.grasps.top_grasps`` the best collision-free grasp of each object (objects
visible at least ``MIN_VISIB``, like the dataset builder). A MuJoCo world is built with the
dataset's own models at their ground-truth poses on a table, the Panda's base 0.5 m from
the object on the world -x side, and the grasp is executed: pre-grasp 10 cm back along
the approach, straight approach, close, lift 15 cm (``sim.pick``). The object counts as
lifted when it rose at least 10 cm. Every pick starts from a fresh world.

The last line printed is one JSON object::

    {"objects": N, "lifted": K, "success_rate": K/N, "failures": [...]}

where each failure names the scene, image, gt index, obj_id and the reason. Objects for
which the generator finds no grasp are not counted (they get no grasp label) and are listed
under ``"no_grasp"``.
"""

import json
import logging
from pathlib import Path
import time
import warnings

import numpy as np
from tqdm import tqdm

from bopask_gen.core.bop import BopDataset, load_json
from bopask_gen.core.errors import BopFormatError
from bopask_gen.sim.assets import YCBV_MASSES_KG

LOG = logging.getLogger(__name__)
MIN_VISIB = 0.15
'''Objects less visible than this get no question from the builder; skipped here too.'''
BASE_OFFSET = 0.5
'''Distance (metres) from the target object to the Panda's base.'''
BASE_TRIES = 3
'''Base poses tried when the arm cannot reach a grasp from the first one.'''
ARM_CORRIDOR = 0.06
'''Half width (metres) of the strip from the base toward the target kept free of objects.'''
ARM_REACH_START = 0.12
'''The corridor starts this far (metres) from the target, outside the hand's own zone.'''
BASE_HALF_SIZE = 0.12
'''Half side (metres) of the square around the base kept free of objects.'''
SYNTH_INFO = 'synth_info.json'


def add_arguments(parser):
    """Arguments of ``bopask-gen grasp-check``."""
    parser.add_argument('dataset', type=Path, help='BOP dataset folder')
    parser.add_argument('--split', default=None,
                        help='split folder (default: the first split of the dataset)')
    parser.add_argument('--max-objects', type=int, default=None,
                        help='stop after this many executed grasps (default: all)')
    parser.add_argument('--seed', type=int, default=0, help='generator rng seed (default 0)')
    parser.add_argument('--collision', choices=('coacd', 'hull'), default='coacd',
                        help='object collision shapes: convex parts from CoACD (default; '
                             'decomposed once per model and cached) or one convex hull')


def is_synthetic_ycbv(dataset):
    """True for datasets written by ``bopask-gen synth`` (their models are sim.assets')."""
    info_path = Path(dataset.root) / SYNTH_INFO
    return info_path.is_file() and load_json(info_path).get('object_set') == 'ycbv'


def object_masses(dataset):
    """obj_id -> kg for YCB-V objects (synthetic YCB-V or a dataset named ycbv*), else {}."""
    if is_synthetic_ycbv(dataset) or dataset.name.lower().startswith('ycbv'):
        return dict(YCBV_MASSES_KG)
    return {}


class ObjectShapes:
    """Mesh and collision parts per obj_id for the sim, from the dataset's models."""

    def __init__(self, dataset, collision='coacd'):
        """``collision``: 'coacd' (convex parts) or 'hull'."""
        self.dataset = dataset
        self.collision = collision
        # Synthetic YCB-V models are the sim's own meshes: use them and their shipped parts.
        self.own_models = is_synthetic_ycbv(dataset)

    def placement(self, obj_id, T_world_obj, mass):
        """A sim.world.Placement of one object."""
        from bopask_gen.sim.collision import mesh_parts
        from bopask_gen.sim.world import Placement
        if self.own_models:
            return Placement(obj_id, T_world_obj, mass=mass)
        mesh = self.dataset.model_mesh(obj_id)
        parts = mesh_parts(mesh) if self.collision == 'coacd' else None
        return Placement(obj_id, T_world_obj, mesh=mesh, mass=mass, parts=parts)


def base_pose_candidates(target_xy, approach_world, footprints, distance=BASE_OFFSET):
    """Return [(base_xy, yaw), ...]: Panda base poses ``distance`` from the target, facing it.

    Best first: behind the grasp's horizontal approach direction (the arm reaches forward
    into a side grasp), or world -x for grasps from above, then the other sides by
    increasing angle; sides where another object's footprint (``footprints``: convex
    polygons (K, 2) in world x, y) overlaps the base, then sides where one overlaps the
    arm's corridor toward the target, go last.
    """
    from bopask_gen.sim.world import convex_polygons_overlap
    target_xy = np.asarray(target_xy, dtype=float)
    h = np.asarray(approach_world, dtype=float)[:2]
    preferred = np.arctan2(-h[1], -h[0]) if np.linalg.norm(h) > 0.3 else np.pi
    ranked = []
    for delta in np.deg2rad([0, 30, -30, 60, -60, 90, -90, 120, -120, 150, -150, 180]):
        ang = preferred + delta
        u = np.array([np.cos(ang), np.sin(ang)])  # from the target toward the base
        v = np.array([-u[1], u[0]])
        base = target_xy + distance * u
        base_box = base + BASE_HALF_SIZE * np.array([u + v, u - v, -u - v, -u + v])
        # The arm reaches over the strip between the base and the hand's working zone.
        near, far = target_xy + ARM_REACH_START * u, base
        corridor = np.array([near + ARM_CORRIDOR * v, far + ARM_CORRIDOR * v,
                             far - ARM_CORRIDOR * v, near - ARM_CORRIDOR * v])
        base_hit = any(convex_polygons_overlap(base_box, f) for f in footprints)
        arm_hit = any(convex_polygons_overlap(corridor, f) for f in footprints)
        ranked.append((base_hit, arm_hit, len(ranked), base, ang + np.pi))
    ranked.sort(key=lambda r: r[:3])
    return [(base, yaw) for *_, base, yaw in ranked]


def footprint_world(scene, obj):
    """Convex 2D footprint (K, 2) of a scene object in the table frame."""
    from scipy.spatial import ConvexHull

    from bopask_gen.core.transforms import transform_points
    xy = transform_points(scene.T_c2w, obj.mesh_cam.vertices)[:, :2]
    return xy[ConvexHull(xy).vertices]


def world_for_grasp(shapes, scene, target, grasp, masses, base_choice=0):
    """Physics-only World with the scene's objects at their GT poses in the table frame.

    ``base_choice`` picks among :func:`base_pose_candidates` (0 = best). Returns (world,
    index of the target among world.objects), or (None, None) when there are no more
    candidates.
    """
    from bopask_gen.sim.world import World
    poses = [scene.T_c2w @ o.T_m2c for o in scene.objects]
    index = [o.gt_index for o in scene.objects].index(target.gt_index)
    footprints = [footprint_world(scene, o) for i, o in enumerate(scene.objects) if i != index]
    approach = scene.T_c2w[:3, :3] @ grasp.T_cam[:3, 2]
    candidates = base_pose_candidates(poses[index][:2, 3], approach, footprints)
    if base_choice >= len(candidates):
        return None, None
    base_xy, yaw = candidates[base_choice]
    placements = [shapes.placement(o.obj_id, T, masses.get(o.obj_id))
                  for o, T in zip(scene.objects, poses)]
    centres = np.array([T[:2, 3] for T in poses] + [base_xy])
    table_centre = (centres.min(axis=0) + centres.max(axis=0)) / 2.0
    half = (centres.max(axis=0) - centres.min(axis=0)) / 2.0 + 0.4
    world = World(placements=placements, camera=False, base_pos=(*base_xy, 0.0),
                  base_yaw=yaw, table_centre=table_centre, table_half_size=half)
    return world, index


def check_grasp(shapes, scene, obj, grasp, ik, masses, base_tries=BASE_TRIES):
    """Execute one grasp of ``obj`` (a generator SceneObject); return a PickResult.

    When the arm cannot reach the grasp (IK fails) from the best base pose, the next
    ``base_tries - 1`` base poses are tried: where the robot stands is ours to choose; the
    grasp label is what is being checked.
    """
    from bopask_gen.sim.pick import execute_pick
    result = None
    for choice in range(base_tries):
        world, index = world_for_grasp(shapes, scene, obj, grasp, masses, choice)
        if world is None:
            break
        ik.set_base(world.T_world_base)
        result = execute_pick(world, ik, index, scene.T_c2w @ grasp.T_cam, grasp.width)
        if not result.reason.startswith('IK failed'):
            break
    return result


def iter_checks(dataset, split, rng, max_objects=None, progress=True, collision='coacd',
                scene_ids=None):
    """Yield one record dict per executed (or grasp-less) object of the split.

    ``scene_ids`` restricts the check to some scenes (default: all of the split).
    """
    from bopask_gen.generator.grasps import top_grasps
    from bopask_gen.generator.scene import build_scene_geometry
    from bopask_gen.sim.ik import PandaIK
    from bopask_gen.sim.world import WorldError
    ik = PandaIK()
    masses = object_masses(dataset)
    shapes = ObjectShapes(dataset, collision)
    executed = 0
    scene_ids = dataset.scene_ids(split) if scene_ids is None else scene_ids
    bar = tqdm(total=max_objects, desc='grasp-check', unit='obj', disable=not progress)
    for scene_id in scene_ids:
        bop_scene = dataset.scene(split, scene_id)
        if not bop_scene.image_ids:
            continue
        frame = bop_scene.frame(bop_scene.image_ids[0])
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            scene = build_scene_geometry(dataset, frame, rng)
        for obj in scene.objects:
            if max_objects is not None and executed >= max_objects:
                bar.close()
                return
            rec = {'scene_id': scene_id, 'im_id': frame.im_id, 'gt_index': obj.gt_index,
                   'obj_id': obj.obj_id}
            if obj.visib_fract is not None and obj.visib_fract < MIN_VISIB:
                continue
            grasps = top_grasps(scene, obj, rng, k=5)
            if not grasps:
                yield {**rec, 'status': 'no_grasp'}
                continue
            t0 = time.perf_counter()
            try:
                res = check_grasp(shapes, scene, obj, grasps[0], ik, masses)
                lifted, reason, rise = bool(res.lifted), res.reason, res.rise
            except WorldError as exc:
                lifted, reason, rise = False, f'world could not be built: {exc}', 0.0
            executed += 1
            bar.update(1)
            out = {**rec, 'status': 'lifted' if lifted else 'failed', 'reason': reason,
                   'rise_m': round(float(rise), 4), 'width_m': round(grasps[0].width, 4),
                   'score': round(grasps[0].score, 3),
                   'approach_z_world': round(float((scene.T_c2w[:3, :3]
                                                    @ grasps[0].T_cam[:3, 2])[2]), 3),
                   'seconds': round(time.perf_counter() - t0, 2)}
            if not lifted:  # enough to replay the failure (see replay_grasp)
                out['grasp_T_cam'] = np.round(grasps[0].T_cam, 6).tolist()
            yield out
    bar.close()


def summarize(records):
    """The grasp-check summary dict of a list of records."""
    done = [r for r in records if r['status'] in ('lifted', 'failed')]
    lifted = sum(r['status'] == 'lifted' for r in done)
    return {
        'objects': len(done),
        'lifted': lifted,
        'success_rate': lifted / len(done) if done else 0.0,
        'failures': [r for r in done if r['status'] == 'failed'],
        'no_grasp': [{k: r[k] for k in ('scene_id', 'im_id', 'gt_index', 'obj_id')}
                     for r in records if r['status'] == 'no_grasp'],
    }


def run(args):
    """Entry point of ``bopask-gen grasp-check``."""
    if args.max_objects is not None and args.max_objects < 1:
        print('grasp-check: --max-objects must be >= 1')
        return 2
    try:
        dataset = BopDataset(args.dataset)
        split = args.split or (dataset.splits() or [None])[0]
        if split is None:
            raise BopFormatError(dataset.root, 'no split folder with scenes')
        records = list(iter_checks(dataset, split, np.random.default_rng(args.seed),
                                   args.max_objects, collision=args.collision))
    except BopFormatError as exc:
        print(f'grasp-check: {exc}')
        return 2
    summary = summarize(records)
    for r in summary['failures']:
        print(f'FAILED scene {r["scene_id"]} im {r["im_id"]} gt {r["gt_index"]} '
              f'obj {r["obj_id"]}: {r["reason"]}')
    print(f'{summary["lifted"]}/{summary["objects"]} grasps lifted their object '
          f'({len(summary["no_grasp"])} objects without a grasp label)')
    print(json.dumps(summary))
    return 0
