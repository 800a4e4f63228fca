"""Episode selection: commands only about objects the camera sees."""

import numpy as np

from bopask_gen.core.transforms import transform_from_xyz_quat_xyzw
from bopask_ros import ros_common as rc
from bopask_ros.episodes import MIN_VISIBLE, visible_fractions


def test_a_target_hidden_behind_a_box_is_not_visible():
    from bopask_ros.sim_node import make_world
    p = rc.load_node_parameters(rc.config_path('extrinsics.yaml'), 'sim_node')
    T_bc = transform_from_xyz_quat_xyzw(p['extrinsic.translation'],
                                        p['extrinsic.rotation_xyzw'])
    # Random-episode scene (bench seed 0, episode 14): the bowl stands behind the cracker box.
    world = make_world(426303516, [2, 5, 12, 13, 16], (3, 5), T_bc)
    try:
        vis = visible_fractions(world)
        ids = [o.obj_id for o in world.objects]
        assert vis[ids.index(13)] < MIN_VISIBLE            # bowl: hidden
        assert vis[ids.index(12)] > 0.5                    # bleach cleanser: in plain view
        assert np.all((vis >= 0.0) & (vis <= 1.0))
    finally:
        world.close()
