"""Collision shapes for the simulator: convex decompositions (CoACD) of object meshes.

MuJoCo collides a mesh geom through its convex hull, which fills a mug's handle, a bowl's
inside or the gap under a drill's handle, so the fingers of a grasp that is right on the
real shape would land on air-filled hull. Objects therefore collide through a set of convex
parts from CoACD (approximate convex decomposition) and render through their real mesh.

Handled, hollow or scissor-like YCB-V objects (``YCBV_FINE``) use finer settings.
Decomposing takes seconds to a minute per object, so the 21 YCB-Video objects ship
precomputed in ``data/sim/ycbv_coacd.npz`` (regenerate with
``python -m bopask_gen.sim.collision``); other meshes are decomposed on first use and cached
under ``~/.cache/bopask/coacd`` (``BOPASK_CACHE`` overrides the folder).
"""

import argparse
import functools
import hashlib
import os
from pathlib import Path
import sys

import numpy as np

from bopask_gen.core.atomic_files import atomic_path

DATA_FILE = Path(__file__).resolve().parents[1] / 'data' / 'sim' / 'ycbv_coacd.npz'
DECIMATE_FACES = 3000
'''Meshes are simplified to this many faces before decomposition (speed).'''
COACD_PARAMS = dict(threshold=0.06, max_convex_hull=12, preprocess_resolution=30,
                    resolution=500, mcts_iterations=40, mcts_nodes=10, mcts_max_depth=2,
                    max_ch_vertex=64, seed=0)
'''CoACD settings: concavity threshold 0.06, at most 12 parts of at most 64 vertices.'''
FINE_COACD_PARAMS = dict(COACD_PARAMS, threshold=0.03, max_convex_hull=32,
                         preprocess_resolution=40, resolution=1000, mcts_iterations=60,
                         mcts_nodes=15)
'''Finer settings for objects whose handles, rims and gaps take grasps.'''
YCBV_FINE = (11, 12, 13, 14, 15, 17, 19, 20)
'''Pitcher, bleach, bowl, mug, drill, scissors and clamps: decomposed with the fine settings.'''


def _cache_dir():
    root = os.environ.get('BOPASK_CACHE') or Path.home() / '.cache' / 'bopask'
    return Path(root) / 'coacd'


def decompose(vertices, faces, params=None):
    """Convex parts of a mesh (metres): a list of (vertices (N, 3), faces (M, 3)) arrays.

    ``params`` are CoACD settings (default COACD_PARAMS).
    """
    # open3d must be loaded before coacd: coacd's bundled libraries break a later
    # `import open3d` in the same process (ImportError: std::bad_cast).
    import open3d as o3d
    try:
        import coacd
    except ImportError as exc:
        raise RuntimeError('coacd is not installed (pip install coacd): needed to decompose '
                           'object meshes into convex collision parts') from exc
    coacd.set_log_level('error')
    mesh = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(np.asarray(vertices, float)),
                                     o3d.utility.Vector3iVector(np.asarray(faces, np.int32)))
    if len(faces) > DECIMATE_FACES:
        mesh = mesh.simplify_quadric_decimation(DECIMATE_FACES)
    parts = coacd.run_coacd(coacd.Mesh(np.asarray(mesh.vertices), np.asarray(mesh.triangles)),
                            **(params or COACD_PARAMS))
    return [(np.asarray(v, dtype=np.float32), np.asarray(f, dtype=np.int32)) for v, f in parts]


def _pack(parts, prefix=''):
    out = {f'{prefix}n': np.array(len(parts))}
    for i, (v, f) in enumerate(parts):
        out[f'{prefix}{i}_v'] = v
        out[f'{prefix}{i}_f'] = f
    return out


def _unpack(npz, prefix=''):
    return [(npz[f'{prefix}{i}_v'], npz[f'{prefix}{i}_f']) for i in range(int(npz[f'{prefix}n']))]


def mesh_key(vertices, faces):
    """Content hash of a mesh (vertices rounded to 0.01 mm) and the decomposition settings."""
    h = hashlib.sha1()
    h.update(np.round(np.asarray(vertices, float) * 1e5).astype(np.int64).tobytes())
    h.update(np.asarray(faces, np.int64).tobytes())
    h.update(repr(sorted(COACD_PARAMS.items())).encode())
    h.update(str(DECIMATE_FACES).encode())
    return h.hexdigest()[:20]


def mesh_parts(mesh):
    """Convex parts of any trimesh (metres), decomposed once and cached on disk."""
    path = _cache_dir() / f'{mesh_key(mesh.vertices, mesh.faces)}.npz'
    if path.is_file():
        with np.load(path) as npz:
            return _unpack(npz)
    print(f'decomposing a {len(mesh.faces)}-face mesh into convex parts (CoACD, once; '
          f'cached in {path.parent})', file=sys.stderr)
    parts = decompose(mesh.vertices, mesh.faces)
    with atomic_path(path, '.npz') as tmp:
        np.savez_compressed(tmp, **_pack(parts))
    return parts


@functools.lru_cache(maxsize=1)
def _ycbv_npz():
    if not DATA_FILE.is_file():
        return None
    with np.load(DATA_FILE) as npz:
        return {k: npz[k] for k in npz.files}


def ycbv_parts(obj_id):
    """Shipped convex parts of a YCB-V object (assets.object_mesh frame), or None if absent."""
    data = _ycbv_npz()
    if data is None or f'{int(obj_id)}_n' not in data:
        return None
    return _unpack(data, f'{int(obj_id)}_')


def write_ycbv_parts(path=DATA_FILE, obj_ids=None):
    """Decompose the YCB-V meshes (assets.object_mesh) and write the shipped file."""
    from tqdm import tqdm

    from bopask_gen.sim.assets import object_mesh, YCBV_OBJECTS
    arrays = {}
    for oid in tqdm(sorted(obj_ids or YCBV_OBJECTS), desc='CoACD', unit='obj'):
        mesh = object_mesh(oid)
        params = FINE_COACD_PARAMS if oid in YCBV_FINE else COACD_PARAMS
        arrays.update(_pack(decompose(mesh.vertices, mesh.faces, params), f'{oid}_'))
    with atomic_path(path, '.npz') as tmp:
        np.savez_compressed(tmp, **arrays)
    _ycbv_npz.cache_clear()
    return path


def main(argv=None):
    """Regenerate the shipped YCB-V decompositions (a few minutes)."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument('--out', type=Path, default=DATA_FILE, help=f'default {DATA_FILE}')
    args = parser.parse_args(argv)
    print(write_ycbv_parts(args.out))
    return 0


if __name__ == '__main__':
    sys.exit(main())
