"""Pick-and-place episodes in the simulator: choosing them and judging them in physics.

An episode is a world (seeded) plus a command "pick up the A and put it next to the B".
Success is judged from the physics, not from the executor's report: A's centre rose at
least ``LIFT_MIN`` above where it rested, and at the end A stands next to B: the horizontal
gap between their footprints (centre distance minus both footprint radii, the largest
horizontal extent of each posed mesh from its centre) is at most ``NEAR_GAP``.

Random episodes draw A from ``PICKABLE``: YCB-V objects a Franka hand (8 cm opening) can
hold from above as they rest in the simulator. The others are targets only. A command is only
given about what the camera sees: an episode whose object or target is less than
``MIN_VISIBLE`` visible once the world has settled is skipped (and reported) rather than run
-- the generator's own rule for asking about an object, so no model trained on its data
could point at it.
"""

from dataclasses import dataclass

import numpy as np

LIFT_MIN = 0.05
'''Metres the object's centre must rise during the episode to count as lifted.'''
NEAR_GAP = 0.10
'''Metres between the two footprints within which the object is 'next to' the target.'''
PICKABLE = (3, 4, 5, 9, 12, 21)
'''YCB-V ids the random episodes pick up (sugar box, tomato soup can, mustard bottle, potted
meat can, bleach cleanser, foam brick). The tuna can and the gelatin and pudding boxes rest
flat and are wider than the open hand; the generator finds no grasp of the mug's body.'''
MIN_VISIBLE = 0.15
'''Least visible fraction of A and B for an episode to be run (the generator's min_visib).'''
DEMO_EPISODES = (
    # (seed, obj_ids, command)
    (11, (4, 5, 21, 3), 'pick up the mustard bottle and put it next to the soup can'),
    (12, (4, 9, 21, 14), 'pick up the foam brick and put it next to the potted meat can'),
    (1389828892, (1, 3, 4, 21), 'put the sugar box next to the master chef can'),
)
'''The default demo: three scenes and commands.'''


@dataclass
class Episode:
    """One scripted episode."""

    seed: int
    obj_ids: tuple
    command: str
    obj_id: int = None
    target_id: int = None


@dataclass
class Outcome:
    """What the physics says about an episode."""

    lifted: bool
    near: bool
    rise: float
    distance: float
    gap: float

    @property
    def success(self):
        """Lifted and put down next to the target."""
        return self.lifted and self.near


def judge(start_positions, end_positions, max_heights, obj_index, target_index, radii,
          lift_min=LIFT_MIN, near_gap=NEAR_GAP):
    """Judge an episode from object centres (N, 3), max heights (N,) and footprint radii (N,)."""
    start = np.asarray(start_positions, dtype=float)
    end = np.asarray(end_positions, dtype=float)
    rise = float(np.asarray(max_heights, dtype=float)[obj_index] - start[obj_index, 2])
    dist = float(np.linalg.norm(end[obj_index, :2] - end[target_index, :2]))
    gap = dist - float(radii[obj_index]) - float(radii[target_index])
    return Outcome(lifted=rise >= lift_min, near=gap <= near_gap, rise=rise, distance=dist,
                   gap=gap)


def footprint_radii(world):
    """(N,) largest horizontal distance of each posed object mesh from its centre, metres."""
    from bopask_gen.core.transforms import transform_points
    out = []
    for obj in world.objects:
        T = world.object_pose(obj.index)
        v = transform_points(T, obj.mesh.vertices)
        out.append(float(np.max(np.linalg.norm(v[:, :2] - T[:2, 3], axis=1))))
    return np.array(out)


def visible_fractions(world):
    """(N,) visible share of each object's silhouette in the camera image (0 when unseen)."""
    seg = world.render_segmentation()
    out = []
    for obj in world.objects:
        full = int(world.render_object_mask(obj.index).sum())
        out.append(float(np.sum(seg == obj.index)) / full if full else 0.0)
    return np.array(out)


def random_episodes(rng, names, n_objects=(3, 5)):
    """Endless random Episodes (``random_episode`` draws), for runs that skip some."""
    while True:
        yield random_episode(rng, names, n_objects)


def random_episode(rng, names, n_objects=(3, 5)):
    """Draw an Episode: distinct objects, one PICKABLE to pick, another as the target.

    ``names`` is the generator's NameTable (canonical names make the command).
    """
    from bopask_gen.sim.assets import YCBV_OBJECTS
    n = int(rng.integers(n_objects[0], n_objects[1] + 1))
    obj = int(rng.choice(PICKABLE))
    others = [i for i in sorted(YCBV_OBJECTS) if i != obj]
    rest = [int(i) for i in rng.choice(others, size=n - 1, replace=False)]
    target = rest[0]
    command = (f'pick up the {names.canonical(obj)} and put it next to the '
               f'{names.canonical(target)}')
    return Episode(seed=int(rng.integers(0, 2**31 - 1)), obj_ids=tuple(sorted([obj] + rest)),
                   command=command, obj_id=obj, target_id=target)


def demo_episodes(names):
    """The default demo Episodes, with the object and target ids resolved."""
    return scripted_episodes(DEMO_EPISODES, names)


def scripted_episodes(triples, names):
    """Episodes of ``(seed, obj_ids, command)``, the object and target found in the command."""
    from bopask_ros.vlm import parse_command
    from bopask_ros.vlm_oracle import match_object
    out = []
    for seed, ids, command in triples:
        cmd = parse_command(command)
        candidates = {i: names.aliases(i) for i in ids}
        out.append(Episode(seed=int(seed), obj_ids=tuple(int(i) for i in ids), command=command,
                           obj_id=match_object(cmd.object_name, candidates),
                           target_id=match_object(cmd.target_name, candidates)))
    return out


def replay_episodes(results, names, failed_only=False):
    """Episodes of a run's results (``episodes.json`` of the bench), to run them again.

    Skipped draws are left out; ``failed_only`` keeps the failures.
    """
    triples = [(r['seed'], r['obj_ids'], r['command']) for r in results
               if not r.get('skipped') and not (failed_only and r.get('success'))]
    return scripted_episodes(triples, names)
