"""``bopask-gen synth``: write synthetic MuJoCo tabletop scenes as a BOP dataset.

Each scene is a fresh :class:`bopask_gen.sim.world.World` (3-8 YCB-Video objects dropped
with physics, Panda at its home pose); each image of a scene is rendered from a new random
camera pose. Ground truth is exact: poses from the simulator, ``mask`` from rendering each
object alone, ``mask_visib`` from the segmentation render, depth from the depth buffer.
The result is read by ``bopask_gen.core.bop`` like real data.

Example::

    bopask-gen synth --out data/synth --scenes 20 --images-per-scene 5 --seed 0
"""

import logging
from pathlib import Path
import time

import numpy as np
from tqdm import tqdm

from bopask_gen.core.atomic_files import write_json_atomic
from bopask_gen.core.bop_writer import (
    BopSceneWriter,
    write_camera_json,
    write_models,
)
from bopask_gen.core.transforms import invert_transform
from bopask_gen.sim.assets import object_mesh, YCBV_OBJECTS
from bopask_gen.sim.world import World, WorldError

LOG = logging.getLogger(__name__)
DEFAULT_SPLIT = 'train_synth'
MAX_SCENE_RETRIES = 10


def add_arguments(parser):
    """Arguments of ``bopask-gen synth``."""
    parser.add_argument('--out', required=True, type=Path,
                        help='dataset folder to write (created; scene folders are replaced)')
    parser.add_argument('--scenes', type=int, default=10, help='number of scenes (default 10)')
    parser.add_argument('--images-per-scene', type=int, default=5,
                        help='camera views per scene (default 5)')
    parser.add_argument('--seed', type=int, default=0, help='random seed (default 0)')
    parser.add_argument('--split', default=DEFAULT_SPLIT,
                        help=f'split folder name (default {DEFAULT_SPLIT})')
    parser.add_argument('--min-objects', type=int, default=3,
                        help='fewest objects per scene (default 3)')
    parser.add_argument('--max-objects', type=int, default=8,
                        help='most objects per scene (default 8)')
    parser.add_argument('--first-scene-id', type=int, default=0,
                        help='id of the first scene folder (default 0)')


def write_world_frames(world, writer, n_images, first_im_id=0):
    """Render ``n_images`` random views of ``world`` into a BopSceneWriter."""
    for k in range(n_images):
        T_wc = world.randomize_camera()
        rgb = world.render_rgb()
        depth = world.render_depth()
        # Far floor beyond what uint16 depth can hold reads as "no measurement", like a
        # sensor out of range.
        depth[depth > writer.max_depth_m] = 0.0
        seg = world.render_segmentation()
        T_cw = invert_transform(T_wc)
        instances = []
        for obj in world.objects:
            instances.append({
                'obj_id': obj.obj_id,
                'T_m2c': T_cw @ world.object_pose(obj.index),
                'mask': world.render_object_mask(obj.index),
                'mask_visib': seg == obj.index,
            })
        writer.add_frame(first_im_id + k, rgb, depth, world.K, T_wc, instances)


def make_world(seed, n_objects, **kwargs):
    """Build a World, retrying with derived seeds when a random layout fails."""
    last = None
    for attempt in range(MAX_SCENE_RETRIES):
        try:
            return World(n_objects=n_objects, seed=seed + 7919 * attempt, **kwargs)
        except WorldError as exc:
            LOG.info('scene seed %d attempt %d failed (%s); retrying', seed, attempt, exc)
            last = exc
    raise WorldError(f'no valid scene for seed {seed} after {MAX_SCENE_RETRIES} tries: {last}')


def generate_dataset(out, scenes, images_per_scene, seed=0, split=DEFAULT_SPLIT,
                     n_objects=(3, 8), first_scene_id=0, progress=True):
    """Write a synthetic BOP dataset; return a dict of counts and timings."""
    if scenes < 1 or images_per_scene < 1:
        raise ValueError('scenes and images_per_scene must be >= 1')
    out = Path(out)
    t0 = time.perf_counter()
    shifts = write_models(out, {oid: object_mesh(oid) for oid in YCBV_OBJECTS})
    # World meshes are already bbox-centred, so the written models share their frame.
    assert max(np.abs(s).max() for s in shifts.values()) < 1e-9
    # Marks the dataset as synthetic YCB-V (grasp-check then uses the real YCB masses).
    write_json_atomic(out / 'synth_info.json', {
        'generator': 'bopask-gen synth', 'object_set': 'ycbv', 'seed': int(seed),
        'world_frame': 'table top centre, z up; cam_R_w2c/cam_t_w2c are in this frame'})
    n_instances = 0
    seeds = np.random.SeedSequence(seed).generate_state(scenes)
    bar = tqdm(range(scenes), desc='synth scenes', unit='scene', disable=not progress)
    for k in bar:
        scene_id = first_scene_id + k
        world = make_world(int(seeds[k]), n_objects)
        try:
            if k == 0:
                write_camera_json(out, world.K, world.width, world.height)
            with BopSceneWriter(out, split, scene_id) as writer:
                write_world_frames(world, writer, images_per_scene)
            n_instances += len(world.objects) * images_per_scene
        finally:
            world.close()
    elapsed = time.perf_counter() - t0
    return {'scenes': scenes, 'images': scenes * images_per_scene, 'instances': n_instances,
            'seconds': elapsed, 'scenes_per_s': scenes / elapsed}


def run(args):
    """Entry point of ``bopask-gen synth``."""
    if args.scenes < 1 or args.images_per_scene < 1:
        print('synth: --scenes and --images-per-scene must be >= 1')
        return 2
    if not 1 <= args.min_objects <= args.max_objects <= len(YCBV_OBJECTS):
        print(f'synth: need 1 <= --min-objects <= --max-objects <= {len(YCBV_OBJECTS)}')
        return 2
    stats = generate_dataset(args.out, args.scenes, args.images_per_scene, args.seed,
                             args.split, (args.min_objects, args.max_objects),
                             args.first_scene_id)
    print(f'wrote {stats["scenes"]} scenes, {stats["images"]} images, '
          f'{stats["instances"]} object instances to {args.out / args.split} '
          f'in {stats["seconds"]:.1f} s ({stats["scenes_per_s"]:.2f} scenes/s)')
    return 0
