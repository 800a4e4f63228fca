"""The BOP-ASK build pipeline: BOP images -> six-task question/answer shards.

Per image: read the frame, build its scene geometry (scene.py), pick the objects that can be
named unambiguously, run the annotators of the requested tasks, and turn their answers into
LLaVA/ShareGPT records (questions.py). Images are processed by a process pool (or Ray) and
gathered in order into fixed-size shards of consecutive images, each written atomically
(shards.py). Re-running skips finished shards; a random generator seeded from
``(seed, scene_id, im_id, task)`` makes every image's QAs independent of worker count,
shard size and the order of processing.

Record layout (one JSON object per QA)::

    {"id", "image" (relative to OUT_DIR), "conversations", "task", "dataset", "split",
     "scene_id", "im_id", "objects" (gt indices), "target" (pixels), "image_size" [w, h],
     "coords"}
"""

from dataclasses import asdict, dataclass, field
import functools
import itertools
import logging
import os
from pathlib import Path
import shutil
import time
import warnings

import numpy as np

from bopask_gen.core.atomic_files import atomic_path
from bopask_gen.core.bop import BopDataset
from bopask_gen.core.camera import project_points
from bopask_gen.generator import questions as q
from bopask_gen.generator.names import load_name_table
from bopask_gen.generator.shards import (
    check_or_write_manifest,
    DATA_DIR,
    read_jsonl,
    remove_stale_temporaries,
    shard_name,
    shard_paths,
    SUMMARY,
    write_json_atomic,
    write_jsonl_atomic,
)

LOG = logging.getLogger(__name__)
IMAGES_DIR = 'images'
GRASPS_PER_OBJECT = 5


@dataclass
class BuildConfig:
    """Everything that decides the content of the output (recorded in the manifest)."""

    dataset_dir: str
    split: str
    out_dir: str
    objects: str | None = None
    tasks: tuple = q.TASKS
    coords: str = 'pixel'
    seed: int = 0
    limit_images: int | None = None
    images_per_shard: int = 50
    max_per_task: int = 4
    min_visib: float = 0.15
    margin: float = 0.03
    link_images: bool = True

    def manifest(self, name_table):
        """The settings a resumed run must share (out_dir and link_images excluded)."""
        d = asdict(self)
        for key in ('out_dir', 'link_images'):
            d.pop(key)
        d['dataset_dir'] = str(Path(self.dataset_dir).resolve())
        d['tasks'] = list(self.tasks)
        d['objects'] = name_table.key
        return d


@dataclass
class ImageResult:
    """What a worker returns for one image."""

    scene_id: int
    im_id: int
    records: list = field(default_factory=list)
    warnings: list = field(default_factory=list)
    seconds: dict = field(default_factory=dict)
    error: str | None = None


# --- per-process state ---------------------------------------------------------------------

_CONTEXT = {}


def _context(config):
    """Per-process dataset reader, name table and scene cache (built once per worker)."""
    key = (config.dataset_dir, config.objects)
    if _CONTEXT.get('key') != key:
        dataset = BopDataset(config.dataset_dir)
        _CONTEXT.clear()
        _CONTEXT.update(key=key, dataset=dataset,
                        names=load_name_table(config.objects, config.dataset_dir),
                        scene=functools.lru_cache(maxsize=4)(
                            lambda split, sid: dataset.scene(split, sid)))
    return _CONTEXT


def image_rng(seed, scene_id, im_id, stream):
    """The random generator of one image and one stream (0 = scene, 1 = names, 10+ tasks)."""
    return np.random.default_rng([int(seed), int(scene_id), int(im_id), int(stream)])


def list_images(dataset, split, limit=None):
    """All (scene_id, im_id) of a split in order, the first ``limit`` if given."""
    images = []
    for scene_id in dataset.scene_ids(split):
        for im_id in dataset.scene(split, scene_id).image_ids:
            images.append((scene_id, im_id))
            if limit is not None and len(images) >= limit:
                return images
    return images


def image_relpath(split, scene_id, im_id, suffix):
    """Path of an output image relative to OUT_DIR."""
    return f'{IMAGES_DIR}/{split}/{scene_id:06d}/{im_id:06d}{suffix}'


def place_image(src, dest, link=True):
    """Hard-link (or copy) ``src`` to ``dest`` atomically; an existing same-size file stays."""
    dest = Path(dest)
    if dest.is_file() and dest.stat().st_size == Path(src).stat().st_size:
        return
    with atomic_path(dest) as tmp:
        if link:
            tmp.unlink()  # the temporary name is reserved; os.link needs it free
            try:
                os.link(src, tmp)
            except OSError:  # other filesystem, or links not allowed: copy instead
                shutil.copyfile(src, tmp)
        else:
            shutil.copyfile(src, tmp)


# --- choosing and naming the objects -------------------------------------------------------

def _projects_inside(scene, point_cam):
    uv = project_points(np.asarray(point_cam, dtype=float)[None], scene.K)[0]
    return bool(np.all(np.isfinite(uv)) and 0 <= uv[0] < scene.width
                and 0 <= uv[1] < scene.height)


def nameable_objects(scene, names, config, rng, warn):
    """Return ``{gt_index: referring phrase}`` of the objects questions may be asked about.

    Objects need a name in the table, enough visibility and a centre inside the image; a
    repeated name must be separable by position words (questions.referring_expressions).
    """
    entries = []
    aliases = {}
    for obj in scene.objects:
        if not names.has(obj.obj_id):
            warn(f'obj_id {obj.obj_id} has no name in the name table {names.key!r}; '
                 'no question about it')
            continue
        if obj.visib_fract is not None and obj.visib_fract < config.min_visib:
            continue
        if not _projects_inside(scene, obj.centre_cam):
            continue
        if obj.obj_id not in aliases:  # one name per object id per image
            aliases[obj.obj_id] = names.pick(obj.obj_id, rng)
        entries.append((obj.gt_index, aliases[obj.obj_id], obj.centre_world))
    phrases = q.referring_expressions(entries, margin=config.margin)
    refs = ObjectRefs((k, v) for k, v in phrases.items() if v is not None)
    refs.base = {key: name.lower() for key, name, _ in entries if key in refs}
    return refs


class ObjectRefs(dict):
    """``{gt_index: referring phrase}``; ``.base`` maps gt_index to the bare name."""

    base = {}


# --- the tasks -----------------------------------------------------------------------------

def _px(points_px):
    return np.round(np.asarray(points_px, dtype=float).reshape(-1, 2), 2).tolist()


def _cam(points_cam):
    return np.round(np.asarray(points_cam, dtype=float).reshape(-1, 3), 5).tolist()


def _matrix(T):
    return np.round(np.asarray(T, dtype=float), 6).tolist()


def _finite(points):
    return bool(np.all(np.isfinite(np.asarray(points, dtype=float))))


def task_pose(scene, refs, config, rng):
    """Cuboid-corner QAs: ``[(prompt, objects, target)]``."""
    from bopask_gen.generator.cuboid import cuboid_corners_cam, cuboid_points_px
    out = []
    for gt in _shuffled(list(refs), rng):
        obj = scene.object_by_gt(gt)
        corners_px = cuboid_points_px(scene, obj)
        if not _finite(corners_px):
            continue
        target = {'points': _px(corners_px), 'points_cam': _cam(cuboid_corners_cam(scene, obj))}
        out.append((q.pose_question(refs[gt], config.coords, rng), [gt], target))
        if len(out) >= config.max_per_task:
            break
    return out


def _grasp_dict(grasp):
    return {'points': _px(grasp.keypoints_px), 'points_cam': _cam(grasp.keypoints_cam),
            'pose_cam': _matrix(grasp.T_cam), 'width': round(float(grasp.width), 5),
            'score': round(float(grasp.score), 5)}


def task_grasp(scene, refs, config, rng):
    """Grasp QAs: the best collision-free grasp, the other top grasps as alternatives."""
    from bopask_gen.generator.grasps import top_grasps
    out = []
    for gt in _shuffled(list(refs), rng):
        grasps = [g for g in top_grasps(scene, scene.object_by_gt(gt), rng, k=GRASPS_PER_OBJECT)
                  if _finite(g.keypoints_px)]
        if not grasps:
            continue
        target = _grasp_dict(grasps[0])
        target['alternatives'] = [_grasp_dict(g) for g in grasps[1:]]
        out.append((q.grasp_question(refs[gt], config.coords, rng), [gt], target))
        if len(out) >= config.max_per_task:
            break
    return out


def task_rearrangement(scene, refs, config, rng):
    """Rearrangement QAs: one point on each blocker; at most one 'nothing' answer per image."""
    from bopask_gen.generator.rearrangement import blocker_point_px, find_blockers
    out = []
    had_empty = False
    for gt in _shuffled(list(refs), rng):
        blockers = find_blockers(scene, scene.object_by_gt(gt), rng)
        if blockers is None or (not blockers and had_empty):
            continue
        had_empty |= not blockers
        points = [blocker_point_px(scene, scene.object_by_gt(b)) for b in blockers]
        if not _finite(points):
            continue
        target = {'blockers': [int(b) for b in blockers], 'points': _px(points),
                  'target_px': _centres_px(scene, [gt])[0]}
        out.append((q.rearrangement_question(refs[gt], config.coords, rng), [gt], target))
        if len(out) >= config.max_per_task:
            break
    return out


def task_trajectory(scene, refs, config, rng):
    """Trajectory QAs for ordered pairs (A, B); at most 2 * max_per_task plans tried."""
    from bopask_gen.generator.trajectory import plan_trajectory
    out = []
    pairs = _shuffled(list(itertools.permutations(sorted(refs), 2)), rng)
    for a, b in pairs[:2 * config.max_per_task]:
        path = plan_trajectory(scene, scene.object_by_gt(a), scene.object_by_gt(b), rng)
        if path is None:
            continue
        points_px = project_points(np.asarray(path, dtype=float), scene.K)
        if not _finite(points_px):
            continue
        target = {'points': _px(points_px), 'points_cam': _cam(path)}
        out.append((q.trajectory_question(refs[a], refs[b], config.coords, rng), [a, b],
                    target))
        if len(out) >= config.max_per_task:
            break
    return out


def _centres_px(scene, gts):
    centres = np.array([scene.object_by_gt(g).centre_cam for g in gts])
    return _px(project_points(centres, scene.K))


def _relation_qas(scene, refs, config, rng, relations_of, question):
    out = []
    for a, b in _shuffled(list(itertools.combinations(sorted(refs), 2)), rng):
        if refs.base.get(a) == refs.base.get(b):
            continue  # 'the leftmost mug' vs 'the rightmost mug': the names give it away
        if rng.random() < 0.5:  # either object may come first in the question
            a, b = b, a
        relations = relations_of(scene.object_by_gt(a), scene.object_by_gt(b))
        if not relations:
            continue
        relation, answer = relations[int(rng.integers(len(relations)))]
        if rng.random() < 0.5:  # ask the opposite relation: balances Yes and No
            relation, answer = q.OPPOSITE[relation], not answer
        target = {'answer': bool(answer), 'relation': relation,
                  'centres_px': _centres_px(scene, [a, b])}
        out.append((question(refs[a], refs[b], relation, rng), [a, b], target))
        if len(out) >= config.max_per_task:
            break
    return out


def task_spatial(scene, refs, config, rng):
    """Left/right, front/behind, above/below Yes/No QAs on unambiguous pairs."""
    from bopask_gen.generator.relations import spatial_relations

    def relations_of(a, b):
        return list(spatial_relations(scene, a, b, margin=config.margin))
    return _relation_qas(scene, refs, config, rng, relations_of, q.spatial_question)


def task_depth(scene, refs, config, rng):
    """Closer/farther (distance to the camera) Yes/No QAs on unambiguous pairs."""
    from bopask_gen.generator.relations import depth_relation

    def relations_of(a, b):
        rel = depth_relation(scene, a, b, margin=config.margin)
        return [rel] if rel is not None else []
    return _relation_qas(scene, refs, config, rng, relations_of, q.depth_question)


TASK_FUNCTIONS = {
    'pose': task_pose, 'grasp': task_grasp, 'trajectory': task_trajectory,
    'rearrangement': task_rearrangement, 'spatial': task_spatial, 'depth': task_depth,
}


def _shuffled(items, rng):
    return [items[i] for i in rng.permutation(len(items))]


# --- one image -----------------------------------------------------------------------------

def process_image(config, scene_id, im_id):
    """Annotate one image; never raises for bad data (the error is in ``result.error``)."""
    result = ImageResult(scene_id=int(scene_id), im_id=int(im_id))
    seen = set()

    def warn(message):
        if message not in seen:
            seen.add(message)
            result.warnings.append(f'scene {scene_id} image {im_id}: {message}')
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            _annotate(config, scene_id, im_id, result, warn)
        for w in caught:
            warn(str(w.message))
    except Exception as exc:  # reported by the parent, which stops or skips the image
        result.error = f'scene {scene_id} image {im_id}: {type(exc).__name__}: {exc}'
        result.records = []
    return result


def _annotate(config, scene_id, im_id, result, warn):
    from bopask_gen.generator.scene import build_scene_geometry
    ctx = _context(config)
    dataset, names = ctx['dataset'], ctx['names']
    t0 = time.perf_counter()
    frame = ctx['scene'](config.split, scene_id).frame(im_id)
    rgb_path = frame.image_path('rgb')
    scene = build_scene_geometry(dataset, frame, image_rng(config.seed, scene_id, im_id, 0))
    refs = nameable_objects(scene, names, config, image_rng(config.seed, scene_id, im_id, 1),
                            warn)
    result.seconds['scene'] = time.perf_counter() - t0
    rel_image = image_relpath(config.split, scene_id, im_id, rgb_path.suffix)
    base = {'image': rel_image, 'dataset': dataset.name, 'split': config.split,
            'scene_id': int(scene_id), 'im_id': int(im_id),
            'image_size': [int(scene.width), int(scene.height)], 'coords': config.coords}
    for task in config.tasks:
        if task in q.PAIR_TASKS and len(refs) < 2:
            continue  # a pair task needs two nameable objects
        if not refs:
            break
        t0 = time.perf_counter()
        rng = image_rng(config.seed, scene_id, im_id, 10 + q.TASKS.index(task))
        for k, (prompt, objects, target) in enumerate(
                TASK_FUNCTIONS[task](scene, refs, config, rng)):
            answer = q.answer_text(task, target, config.coords, scene.width, scene.height)
            record = {'id': f'{dataset.name}_{config.split}_{scene_id:06d}_{im_id:06d}_'
                            f'{task}_{k:02d}',
                      'conversations': q.conversation(prompt, answer), 'task': task,
                      'objects': [int(o) for o in objects], 'target': target}
            record.update(base)
            result.records.append(record)
        result.seconds[task] = time.perf_counter() - t0
    place_image(rgb_path, Path(config.out_dir) / rel_image, link=config.link_images)


# --- the whole split ----------------------------------------------------------------------

class BuildError(RuntimeError):
    """The build stopped; the message says why and that finished shards are kept."""


def plan_shards(images, images_per_shard):
    """Split the image list into consecutive shards: ``[(index, [(scene, im), ...])]``."""
    if images_per_shard < 1:
        raise ValueError(f'images per shard must be >= 1, got {images_per_shard}')
    return [(i // images_per_shard, images[i:i + images_per_shard])
            for i in range(0, len(images), images_per_shard)]


def _serial_results(config, images):
    for scene_id, im_id in images:
        yield process_image(config, scene_id, im_id)


def _pool_results(config, images, workers):
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool
    import multiprocessing
    # forkserver: workers start clean (no inherited threads from open3d/OMPL in the parent)
    mp = multiprocessing.get_context('forkserver')
    with ProcessPoolExecutor(max_workers=workers, mp_context=mp) as pool:
        window = workers * 4  # bounded look-ahead keeps memory flat on huge splits
        pending = []
        it = iter(images)
        try:
            for item in itertools.islice(it, window):
                pending.append(pool.submit(process_image, config, *item))
            while pending:
                result = pending.pop(0).result()
                nxt = next(it, None)
                if nxt is not None:
                    pending.append(pool.submit(process_image, config, *nxt))
                yield result
        except BrokenProcessPool as exc:
            raise BuildError(f'a worker process died ({exc}); the finished shards are kept: '
                             're-run the same command to resume') from exc
        finally:
            for fut in pending:
                fut.cancel()


def _ray_results(config, images, address, workers):
    try:
        import ray
    except ImportError as exc:
        raise BuildError('--ray needs the ray package, which is not installed: '
                         'pip install ray (or leave out --ray)') from exc
    started = not ray.is_initialized()
    if started:
        kwargs = {'include_dashboard': False, 'log_to_driver': False}
        if address in (None, 'local'):
            kwargs['num_cpus'] = workers
        else:
            kwargs['address'] = address
        ray.init(**kwargs)
    remote = ray.remote(process_image)
    try:
        window = max(workers, 1) * 4
        it = iter(images)
        pending = [remote.remote(config, *item) for item in itertools.islice(it, window)]
        while pending:
            result = ray.get(pending.pop(0))
            nxt = next(it, None)
            if nxt is not None:
                pending.append(remote.remote(config, *nxt))
            yield result
    finally:
        if started:
            ray.shutdown()


def summarize(out_dir):
    """Count the QAs of every finished shard: per task, images, records."""
    counts = dict.fromkeys(q.TASKS, 0)
    images = set()
    total = 0
    for path in shard_paths(out_dir):
        for record in read_jsonl(path):
            counts[record['task']] = counts.get(record['task'], 0) + 1
            images.add((record['scene_id'], record['im_id']))
            total += 1
    return {'counts': counts, 'qas': total, 'images_with_qas': len(images),
            'shards': len(shard_paths(out_dir))}


def build(config, workers=1, ray_address=None, skip_bad_images=False, progress=True):
    """Build (or resume) a BOP-ASK dataset; return the summary dict (also summary.json)."""
    t_start = time.perf_counter()
    unknown = [t for t in config.tasks if t not in q.TASKS]
    if unknown or not config.tasks:
        raise ValueError(f'unknown tasks {unknown}; choose from {",".join(q.TASKS)}')
    q.check_coords(config.coords)
    dataset = BopDataset(config.dataset_dir)
    names = load_name_table(config.objects, config.dataset_dir)
    dataset.models_info  # noqa: B018 -- read now so a corrupt models_info fails first
    images = list_images(dataset, config.split, config.limit_images)
    if not images:
        raise BuildError(f'{Path(config.dataset_dir) / config.split}: no annotated images')
    out_dir = Path(config.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    check_or_write_manifest(out_dir, config.manifest(names))
    remove_stale_temporaries(out_dir)
    shards = plan_shards(images, config.images_per_shard)
    done = {p.name for p in shard_paths(out_dir)}
    todo = [(i, imgs) for i, imgs in shards if shard_name(config.split, i) not in done]
    todo_images = [im for _, imgs in todo for im in imgs]
    LOG.info('%d images in %d shards; %d shards to do (%d already finished)', len(images),
             len(shards), len(todo), len(shards) - len(todo))
    if ray_address is not None:
        results = _ray_results(config, todo_images, ray_address, workers)
    elif workers > 1 and len(todo_images) > 1:
        results = _pool_results(config, todo_images, workers)
    else:
        results = _serial_results(config, todo_images)
    stage_seconds = {}
    n_warnings = 0
    skipped = []
    bar = _progress(len(todo_images), progress)
    try:
        for index, shard_images in todo:
            shard_records = []
            for _ in shard_images:
                result = next(results)
                bar.update(1)
                for message in result.warnings:
                    LOG.warning(message)
                n_warnings += len(result.warnings)
                if result.error:
                    if not skip_bad_images:
                        raise BuildError(f'{result.error} (finished shards are kept; fix the '
                                         'input or pass --skip-bad-images)')
                    LOG.error('skipped: %s', result.error)
                    skipped.append(result.error)
                    continue
                for stage, sec in result.seconds.items():
                    stage_seconds[stage] = stage_seconds.get(stage, 0.0) + sec
                shard_records.extend(result.records)
            write_jsonl_atomic(out_dir / DATA_DIR / shard_name(config.split, index),
                               shard_records)
    finally:
        bar.close()
        results.close()
    seconds = time.perf_counter() - t_start
    summary = summarize(out_dir)
    summary.update({
        'dataset': dataset.name, 'split': config.split, 'tasks': list(config.tasks),
        'coords': config.coords, 'seed': config.seed, 'objects': names.key,
        'images': len(images), 'images_this_run': len(todo_images),
        'seconds': round(seconds, 3),
        'images_per_s': round(len(todo_images) / seconds, 3) if seconds > 0 else None,
        'workers': workers if ray_address is None else f'ray:{ray_address}',
        'stage_seconds': {k: round(v, 3) for k, v in stage_seconds.items()},
        'warnings': n_warnings, 'skipped_images': skipped,
    })
    write_json_atomic(out_dir / SUMMARY, summary)
    return summary


def _progress(total, enabled):
    from tqdm import tqdm
    return tqdm(total=total, unit='img', desc='bopask-gen build', disable=not enabled,
                dynamic_ncols=True)
