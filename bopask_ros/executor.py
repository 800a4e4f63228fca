"""Pick-and-place motion from a grasp target (the core of the executor node).

``plan_pick_place`` turns a grasp pose, opening width and waypoint surface points (robot
base frame) into a list of steps -- pre-grasp, approach, close, lift, waypoints, place,
open, retreat -- checks every Cartesian target against the workspace box (refusing, never
clamping), and solves IK for all of them *before* anything moves, so a refusal leaves the
arm where it is.

Carrying: the object is held ``hold_offset`` above its support (TCP height at the grasp
minus the table height) and carried at the lift height through the points where the
intermediate waypoints' viewing rays cross that height. Placing: the target point (the top
of the object under the last waypoint) gives the goal; the object is put down on the table
``place_standoff`` from it, on the side facing the object's start (``place_point``), and
lowered from at least ``carry_clearance`` above the target's top. The carrying height is
tried from high (the object's bottom over the whole scene, then over the target) to low
(``CARRY_TIERS``): the first one the arm can reach is planned. Carry poses beyond the arm's
reach fall back to the waypoints' surface points or are skipped; over the whole scene, a
carry pose without an IK solution is left out (nothing is in the way there). When no
carrying height works through the arm configuration the solver finds from the arm's pose
(near the robot's base: the wrist turns over on the way down or up), the grasp's other IK
branches are tried (``grasp_configurations``). No plan in which the arm would hit itself is
returned (``check_self_collision``: every configuration, and the free move to the first).
"""

from dataclasses import dataclass, field
import functools

import numpy as np

from bopask_gen.core import gripper
from bopask_gen.core.transforms import make_transform


class WorkspaceError(ValueError):
    """A target outside the workspace box (the arm is not moved)."""


class IKError(RuntimeError):
    """No IK solution for a step (the arm is not moved)."""


@dataclass
class ExecutorParams:
    """Motion and safety parameters (defaults from config/pick_place.yaml)."""

    workspace_min: tuple = (0.2, -0.5, 0.005)
    workspace_max: tuple = (0.85, 0.5, 0.6)
    table_z: float = 0.0
    pregrasp_offset: float = 0.12
    lift_height: float = 0.15
    carry_clearance: float = 0.05
    carry_over_scene: bool = True
    place_standoff: float = 0.13
    place_clearance: float = 0.01
    retreat_offset: float = 0.12
    cartesian_step: float = 0.05
    max_joint_jump: float = 0.5
    max_joint_speed: float = 0.8
    min_segment_time: float = 0.3
    open_width: float = gripper.MAX_OPENING
    open_margin: float = 0.015
    close_width: float = 0.0


@dataclass
class Step:
    """One executor step: an arm trajectory (joint waypoints + times) or a gripper command."""

    name: str
    kind: str                       # 'arm' | 'gripper'
    positions: np.ndarray = field(default_factory=lambda: np.zeros((0, 7)))
    times: np.ndarray = field(default_factory=lambda: np.zeros(0))
    width: float = 0.0
    targets: list = field(default_factory=list)   # Cartesian TCP targets (4x4), for display

    @property
    def duration(self):
        """Seconds the step's trajectory lasts (0 for the gripper)."""
        return float(self.times[-1]) if len(self.times) else 0.0


def check_workspace(points, names, params):
    """Raise WorkspaceError for the first point outside the box ``[workspace_min, max]``."""
    lo, hi = np.asarray(params.workspace_min, float), np.asarray(params.workspace_max, float)
    for name, p in zip(names, np.asarray(points, dtype=float).reshape(-1, 3)):
        if not np.all(np.isfinite(p)) or np.any(p < lo) or np.any(p > hi):
            raise WorkspaceError(
                f'{name} target ({p[0]:.3f}, {p[1]:.3f}, {p[2]:.3f}) m is outside the workspace '
                f'box x[{lo[0]:.2f}, {hi[0]:.2f}] y[{lo[1]:.2f}, {hi[1]:.2f}] '
                f'z[{lo[2]:.2f}, {hi[2]:.2f}]')


def translated(T, offset):
    """Return a copy of pose ``T`` moved by a base-frame offset (3,)."""
    out = np.array(T, dtype=float)
    out[:3, 3] += np.asarray(offset, dtype=float)
    return out


def place_point(grasp_position, target_point, standoff):
    """Return the (3,) place location: ``standoff`` from the target toward where A came from.

    The side facing the object's start is the side the collision-free path arrived on.
    """
    target = np.asarray(target_point, dtype=float).reshape(3)
    direction = np.asarray(grasp_position, float)[:2] - target[:2]
    if np.linalg.norm(direction) < 1e-6:
        direction = np.array([-1.0, 0.0])   # object right over the target: toward the robot
    direction /= np.linalg.norm(direction)
    out = target.copy()
    out[:2] += standoff * direction
    return out


def ray_at_height(ray, z):
    """Return the point of a base-frame ray (origin, direction) at height ``z``, or None."""
    ray = np.asarray(ray, dtype=float).reshape(6)
    origin, direction = ray[:3], ray[3:]
    if abs(direction[2]) < 1e-3:
        return None
    t = (z - origin[2]) / direction[2]
    return origin + t * direction if t > 0 else None


CARRY_TIERS = ('scene', 'target', 'lift', 'low')
'''Carrying heights tried in order (see ``cartesian_targets``), highest first.'''


def cartesian_targets(T_grasp, waypoints, params, target_point=None, waypoint_rays=None,
                      skipped=None, place=None, scene_top_z=None, carry='lift', reachable=None,
                      carried=None):
    """Return ``[(step name, [T, ...]), ...]`` of the TCP poses of a pick and place.

    Every pose keeps the grasp orientation (approach and yaw) while carrying. Indices of
    intermediate waypoints left out (outside the workspace, or out of reach) are appended
    to ``skipped``; those of the carry poses (the ``'waypoints'`` step but its last pose)
    to ``carried``. ``reachable(T) -> bool`` (optional; a quick necessary condition such as
    ``PandaIK.reachable``) rules out carry poses the arm cannot reach.
    ``carry`` (one of CARRY_TIERS) sets how high the object is carried: ``'scene'`` its
    bottom ``carry_clearance`` above the scene's highest point (``scene_top_z``; only with
    ``carry_over_scene``), ``'target'`` above the target's top, ``'lift'`` at
    ``lift_height`` over the grasp, rising above the target's top only over the place point,
    ``'low'`` at ``lift_height`` all the way, coming down onto the place point from there.
    """
    if carry not in CARRY_TIERS:
        raise ValueError(f'carry must be one of {CARRY_TIERS}, got {carry!r}')
    skipped = [] if skipped is None else skipped
    carried = [] if carried is None else carried
    T_grasp = np.asarray(T_grasp, dtype=float)
    approach = T_grasp[:3, 2]
    g = T_grasp[:3, 3]
    hold_offset = max(g[2] - params.table_z, 0.0)
    T_pre = translated(T_grasp, -approach * params.pregrasp_offset)
    lift_z = g[2] + params.lift_height
    waypoints = np.asarray(waypoints, dtype=float).reshape(-1, 3)
    target = waypoints[-1] if target_point is None else np.asarray(target_point, float)
    place = place_point(g, target, params.place_standoff) if place is None else \
        np.asarray(place, dtype=float)
    over_target_z = max(lift_z, target[2] + hold_offset + params.carry_clearance)
    if carry == 'scene' and scene_top_z is not None and params.carry_over_scene:
        # The object's bottom above the highest thing in the scene: nothing in the way.
        lift_z = max(over_target_z, scene_top_z + hold_offset + params.carry_clearance)
    elif carry == 'target':
        # The generator's path ends over the target, so the carry comes near it.
        lift_z = over_target_z
    T_lift = translated(T_grasp, [0.0, 0.0, lift_z - g[2]])
    carry_poses = []
    # Skip the first waypoint (the object being held) and the last (over the target). The
    # waypoints are positions in the air: the carry pose is where a waypoint's viewing ray
    # crosses the carrying height (its surface point is only a fallback without rays).
    # A crossing outside the workspace box (a ray too shallow to meet the carrying height
    # nearby) or out of the arm's reach (the higher the carry, the nearer the camera the
    # crossing: far out at the top of the arm's reach) falls back to the surface point
    # lifted to the carrying height; if that is outside or out of reach too (the pixel sees
    # the floor beyond the table), the intermediate waypoint is skipped -- only shaping
    # the path, never a grasp or place target -- and reported.
    lo, hi = np.asarray(params.workspace_min, float), np.asarray(params.workspace_max, float)

    def usable(p):
        return p is not None and np.all(p >= lo) and np.all(p <= hi) and \
            (reachable is None or reachable(make_transform(T_grasp[:3, :3], p)))
    for i in range(1, len(waypoints) - 1):
        p = None
        if waypoint_rays is not None and len(waypoint_rays) == len(waypoints):
            p = ray_at_height(waypoint_rays[i], lift_z)
        if not usable(p):
            p = waypoints[i].copy()
            p[2] = max(lift_z, p[2] + hold_offset + params.carry_clearance)
        if not usable(p):
            skipped.append(i)
            continue
        carry_poses.append(make_transform(T_grasp[:3, :3], p))
        carried.append(i)
    place_z = params.table_z + hold_offset + params.place_clearance
    above_place_z = lift_z if carry == 'low' else max(lift_z, over_target_z)
    T_above = make_transform(T_grasp[:3, :3], [place[0], place[1], above_place_z])
    T_place = make_transform(T_grasp[:3, :3], [place[0], place[1], place_z])
    # Back out along the approach (straight up for a top-down grasp): a tilted hand lifted
    # straight up would drag its lower finger over the object it just let go.
    T_retreat = translated(T_place, -approach * params.retreat_offset)
    return [
        ('pre-grasp', [T_pre]),
        ('approach', [T_grasp]),
        ('lift', [T_lift]),
        ('waypoints', carry_poses + [T_above]),
        ('place', [T_place]),
        ('retreat', [T_retreat]),
    ]


def interpolate_line(T_from, T_to, step):
    """Poses every ``step`` metres on the straight line between two same-orientation poses."""
    a, b = np.asarray(T_from, float), np.asarray(T_to, float)
    n = max(int(np.ceil(np.linalg.norm(b[:3, 3] - a[:3, 3]) / step)), 1)
    return [make_transform(b[:3, :3], a[:3, 3] + (b[:3, 3] - a[:3, 3]) * (i / n))
            for i in range(1, n + 1)]


def time_joint_path(path, q_start, params):
    """Return times for a joint path so no joint exceeds ``max_joint_speed``."""
    qs = np.vstack([q_start, path])
    seg = np.max(np.abs(np.diff(qs, axis=0)), axis=1) / params.max_joint_speed
    times = np.cumsum(seg)
    # Ease in/out: a floor on the total, spread uniformly over the points.
    floor = params.min_segment_time
    if times[-1] < floor:
        times = times * (floor / max(times[-1], 1e-9)) if times[-1] > 0 else \
            np.linspace(floor / len(times), floor, len(times))
    return times


def _jumps(sol, q, max_jump):
    return max_jump is not None and np.max(np.abs(sol - q)) > max_jump


_UNSOLVED = object()


def _solve_halves(ik, T_from, T_to, q, max_jump, depth, sol=_UNSOLVED):
    """Joint solutions reaching ``T_to`` from ``q`` (at ``T_from``) through midpoints, or None.

    A seed far from the goal can leave the solver short of it (or on another branch); the
    straight segment is halved up to ``depth`` times, each half seeded by the last solution.
    ``sol``: the solver's answer for ``T_to`` from ``q`` when already known (not solved
    again: the solver is deterministic).
    """
    sol = ik.solve(T_to, q, 0) if sol is _UNSOLVED else sol
    if sol is not None and not _jumps(np.asarray(sol, dtype=float), q, max_jump):
        return [np.asarray(sol, dtype=float)]
    if depth == 0:
        return None
    mid = make_transform(T_to[:3, :3], (T_from[:3, 3] + T_to[:3, 3]) / 2.0)
    first = _solve_halves(ik, T_from, mid, q, max_jump, depth - 1)
    if first is None:
        return None
    second = _solve_halves(ik, mid, T_to, first[-1], max_jump, depth - 1)
    return None if second is None else first + second


def _reachable(ik, T):
    """False when ``ik`` (with a ``reachable`` check) rules the pose out at once."""
    check = getattr(ik, 'reachable', None)
    return True if check is None else bool(check(T))


def solve_path(ik, poses, q_seed, step_name, max_jump=None, restarts=0, T_from=None,
               max_halvings=1, numbering=None):
    """Solve IK along ``poses``, each seeded by the previous solution; raise IKError.

    ``max_jump`` (radians) refuses a solution that leaps to another arm configuration
    between two close Cartesian poses (the arm would sweep through the scene). Random
    restarts (``restarts``) are allowed for the first pose only: later poses are close to
    their seed, and a restart there would be a configuration change anyway. When a pose
    fails from its seed, the straight segment from the previous pose (``T_from`` for the
    first one: where the arm is) is halved (``max_halvings`` levels) before giving up --
    unless the pose is out of the arm's reach (``ik.reachable``, when the solver has it):
    no midpoint brings it nearer; the path then holds the midpoints too. ``numbering``
    (first index, total) numbers the poses in messages when they are part of a longer
    path.
    """
    first, total = (0, len(poses)) if numbering is None else numbering
    path, q = [], np.asarray(q_seed, dtype=float)
    prev = None if T_from is None else np.asarray(T_from, dtype=float)
    for i, T in enumerate(poses):
        T = np.asarray(T, dtype=float)
        sol = ik.solve(T, q, restarts if i == 0 else 0)
        p = T[:3, 3]
        where = (f'{step_name} pose {first + i + 1}/{total} at '
                 f'({p[0]:.3f}, {p[1]:.3f}, {p[2]:.3f}) m')
        reason = getattr(ik, 'last_message', '') if sol is None else ''
        sols = None if sol is None else [np.asarray(sol, dtype=float)]
        if (sols is None or _jumps(sols[0], q, max_jump)) and prev is not None and \
                _reachable(ik, T):
            # The answer from the seed is that of a solve without restarts, unless a restart
            # found it (a failure with restarts failed from the seed too).
            known = sol if sol is None or restarts == 0 or i > 0 else _UNSOLVED
            sols = _solve_halves(ik, prev, T, q, max_jump, max_halvings, known) or sols
        if sols is None:
            raise IKError(f'IK failed for {where}' + (f': {reason}' if reason else ''))
        if _jumps(sols[0], q, max_jump):
            raise IKError(f'IK solution for {where} jumps {np.max(np.abs(sols[0] - q)):.2f} '
                          f'rad from the previous pose (configuration change)')
        path.extend(sols)
        q, prev = sols[-1], T
    return np.array(path)


def plan_pick_place(T_grasp, waypoints, q_start, ik, params=None, target_point=None,
                    waypoint_rays=None, width=None, skipped=None, place=None,
                    scene_top_z=None, dropped=None):
    """Return the list of Steps of a pick and place, or raise WorkspaceError / IKError.

    ``ik.solve(T_base_tcp, q_seed, restarts) -> q (7,) or None``; ``ik.forward(q) -> T``
    and ``ik.reachable(T) -> bool`` (a quick necessary condition) are optional. The grasp's
    yaw is ambiguous by 180 degrees (the hand is symmetric): the version whose finger line
    is nearer the hand's current one is planned first (less wrist rotation), the other only
    when the first has no IK solution. The hand opens to the grasp ``width`` plus
    ``open_margin`` per side (the opening the grasp was checked collision-free with), or
    fully when ``width`` is None. Intermediate waypoints left out of the carry (see
    ``cartesian_targets``: outside the workspace or out of reach) are listed in
    ``skipped``. The carrying height is the highest of ``CARRY_TIERS`` that the arm
    reaches (workspace box and IK), each tried with both yaws; the first tier's error is
    raised when none works -- after the grasp's other arm configurations were tried
    (``grasp_configurations``; only with ``ik.joint_limits``): each a pick and place solved
    from that grasp configuration out. Carrying above the whole scene (``'scene'``),
    nothing is in the way: an intermediate waypoint the arm has no IK solution for there is
    left out (the arm goes straight on to the next) and listed in ``dropped``.
    """
    params = params or ExecutorParams()
    skipped = [] if skipped is None else skipped
    dropped = [] if dropped is None else dropped
    T_grasp = np.asarray(T_grasp, dtype=float)
    candidates = [T_grasp, gripper.flip_about_approach(T_grasp)]
    if hasattr(ik, 'forward'):
        y_now = np.asarray(ik.forward(q_start))[:3, 1]
        if T_grasp[:3, 1] @ y_now < 0:
            candidates.reverse()
    first_error = None
    reachable = functools.partial(_reachable, ik)
    # Carrying heights, highest first: a high carry clears the scene (a carried object swept
    # through a tall target knocks it over), but a tall scene at the far reach can put those
    # poses out of the arm's top-down reach; then a lower tier, both yaws each. The place
    # point lies beside the target, free of objects, so the last tier comes down onto it
    # from the carrying height.
    tiers = [t for t in CARRY_TIERS if t != 'scene' or
             (params.carry_over_scene and scene_top_z is not None)]
    tried, solved, plannable = [], {}, []
    for carry in tiers:
        for T in candidates:
            del skipped[:]
            del dropped[:]
            carried = []
            targets = cartesian_targets(T, waypoints, params, target_point, waypoint_rays,
                                        skipped, place, scene_top_z, carry=carry,
                                        reachable=reachable, carried=carried)
            key = np.array([P for _, poses in targets for P in poses])
            if any(k.shape == key.shape and np.allclose(k, key) for k in tried):
                continue   # a lower tier that comes out the same (a low target)
            names = [name for name, poses in targets for _ in poses]
            try:
                check_workspace([P[:3, 3] for _, poses in targets for P in poses], names,
                                params)
                tried.append(key)
                plannable.append((T, targets, list(skipped), carried, carry == 'scene'))
                droppable = range(len(carried)) if carry == 'scene' else ()
                kept = []
                steps = _solve_steps(targets, q_start, ik, params, width, solved, droppable,
                                     kept)
                check_self_collision(ik, steps, q_start)
                dropped.extend(carried[k] for k in range(len(carried)) if k not in kept)
                return steps
            except (IKError, WorkspaceError) as exc:
                first_error = first_error or exc
    # Near the robot's base (or at the edge of its reach) the configuration the solver
    # settles in from the arm's pose can be one from which the approach or the lift turns
    # the wrist over (a configuration change mid-line), while another branch of the same
    # grasp -- the redundant arm has several -- follows both lines. Only now (the plans
    # above are unchanged): the grasp's configurations from random starts, each tried
    # through every carry height, the nearest the arm's pose first. The move to the
    # pre-grasp is free in joint space (nothing checks collisions): to another branch it
    # can swing the hand down through the scene, so a branch is taken only when the hand
    # stays above the pre-grasp (clear of the object, ``pregrasp_offset`` above it) on the
    # way there.
    for T in candidates:
        options = [o for o in plannable if o[0] is T]
        for q_grasp in grasp_configurations(ik, T, q_start) if options else ():
            for _, targets, skips, carried, over_scene in options:
                kept = []
                try:
                    steps = _solve_steps(targets, q_start, ik, params, width, solved,
                                         range(len(carried)) if over_scene else (), kept,
                                         q_grasp=q_grasp)
                    check_self_collision(ik, steps, q_start)
                except IKError:
                    continue
                if not free_move_stays_above(ik, q_start, steps[0].positions[-1],
                                             targets[0][1][-1][2, 3]):
                    break   # the other carry heights start with the same free move
                skipped[:] = skips
                dropped[:] = [carried[k] for k in range(len(carried)) if k not in kept]
                return steps
    if isinstance(first_error, IKError) and not _reachable(ik, T_grasp):
        # Both yaws share the approach, and so the wrist's place: no carry height or arm
        # configuration changes that (a steeply tilted grasp on the far side of an object
        # puts the wrist beyond it). Said, so that the refusal points at the grasp.
        g = T_grasp[:3, 3]
        raise IKError(f'{first_error}; the grasp at ({g[0]:.3f}, {g[1]:.3f}, {g[2]:.3f}) m, '
                      f'tilted {gripper.approach_tilt_deg(T_grasp):.0f} deg, is itself out of '
                      f"the arm's reach") from None
    raise first_error


def check_self_collision(ik, steps, q_start, n_free=10):
    """Raise IKError when the arm would hit itself on the way (``ik.self_collision``).

    Every solved configuration of the arm steps is checked, and ``n_free`` points of the
    free move from ``q_start`` to the first one (straight in joint space: another IK branch
    can swing a link through another). Nothing is checked without ``ik.self_collision``.
    """
    collides = getattr(ik, 'self_collision', None)
    if collides is None:
        return
    arm = [s for s in steps if s.kind == 'arm' and len(s.positions)]
    if not arm:
        return
    free = [('the move to ' + arm[0].name, q)
            for q in joint_line(q_start, arm[0].positions[0], n_free)[1:]]
    for name, q in free + [(s.name, q) for s in arm for q in s.positions]:
        bodies = collides(q)
        if bodies is not None:
            raise IKError(f'the arm would hit itself ({bodies[0]} and {bodies[1]}) in '
                          f'{name}')


def joint_line(q_from, q_to, n):
    """Return the ``n + 1`` configurations of a straight joint-space move, ``q_from`` first.

    ``n`` equal steps: how the controller moves the arm between two trajectory points.
    """
    q_from, q_to = np.asarray(q_from, dtype=float), np.asarray(q_to, dtype=float)
    return [q_from + t * (q_to - q_from) for t in np.linspace(0.0, 1.0, n + 1)]


def free_move_stays_above(ik, q_from, q_to, z_min, n=20, tolerance=0.01):
    """Whether the hand stays above ``z_min`` moving straight in joint space (or no FK).

    The TCP and the wrist end of the hand (``WRIST_BEHIND_TCP`` back along the approach)
    at ``n`` points of the joint-space line, at most ``tolerance`` below ``z_min``.
    """
    if not hasattr(ik, 'forward'):
        return True
    for q in joint_line(q_from, q_to, n):
        T = np.asarray(ik.forward(q))
        low = min(T[2, 3], T[2, 3] - WRIST_BEHIND_TCP * T[2, 2])
        if low < z_min - tolerance:
            return False
    return True


WRIST_BEHIND_TCP = 0.21
'''Metres from the TCP back to the Panda's wrist along the approach (its hand's length).'''

GRASP_SEEDS = 24
'''Random starts of the grasp configuration search (``grasp_configurations``).'''


def grasp_configurations(ik, T_grasp, q_start, n_seeds=GRASP_SEEDS, distinct=0.2):
    """Distinct IK solutions (7,) of ``T_grasp`` from random starts, nearest ``q_start`` first.

    Needs ``ik.joint_limits`` ((lower, upper) arrays; none without it). The starts are drawn
    from a fixed seed: a plan is repeatable. Solutions within ``distinct`` radians (every
    joint) of one already found are the same branch and left out.
    """
    limits = getattr(ik, 'joint_limits', None)
    if limits is None:
        return []
    lower, upper = (np.asarray(v, dtype=float) for v in limits)
    rng = np.random.default_rng(0)
    found = []
    for _ in range(n_seeds):
        q = ik.solve(T_grasp, rng.uniform(lower, upper), 0)
        if q is not None and all(np.max(np.abs(q - f)) > distinct for f in found):
            found.append(np.asarray(q, dtype=float))
    q_start = np.asarray(q_start, dtype=float)
    return sorted(found, key=lambda q: float(np.max(np.abs(q - q_start))))


def _solve_cached(solved, key, *args, solve=solve_path, **kwargs):
    # ``solved``: IK paths (or failures) of what was already tried -- the carry tiers and
    # yaws share steps (pre-grasp, approach) and segments, which need not be solved again.
    # ``solve``: the solver called on a miss (``solve_path`` or ``_approach_from_grasp``).
    if key not in solved:
        try:
            solved[key] = solve(*args, **kwargs)
        except IKError as exc:
            solved[key] = exc
    if isinstance(solved[key], IKError):
        raise solved[key]
    return solved[key]


def _approach_from_grasp(ik, T_pre, T_grasp, q_start, params, q_grasp=None):
    """(pre-grasp path (1, 7), approach path) solved from the grasp up; raise IKError.

    The grasp configuration is solved first (random restarts allowed, as for a pre-grasp),
    or given (``q_grasp``), then the straight line up to the pre-grasp seeded by it, and
    the approach is that path reversed: the pre-grasp configuration is then one the arm
    comes down from without a configuration change.
    """
    grasp = solve_path(ik, [T_grasp], q_start, 'approach', restarts=3) if q_grasp is None \
        else np.asarray(q_grasp, dtype=float).reshape(1, 7)
    up = interpolate_line(T_grasp, T_pre, params.cartesian_step)
    path_up = solve_path(ik, up, grasp[-1], 'approach', params.max_joint_jump, T_from=T_grasp)
    return path_up[-1:], np.vstack([path_up[-2::-1], grasp])


def _solve_carry(ik, T_from, poses, q, params, solved, droppable=(), kept=None):
    """Joint path through the carry ``poses`` from ``q`` (at ``T_from``); raise IKError.

    Straight segments between the poses, solved every ``2 * cartesian_step``. A pose in
    ``droppable`` (indices) whose segment has no solution is left out: the arm goes
    straight from the last pose kept to the next. The indices kept are put in ``kept``.
    """
    keep = list(range(len(poses)))
    step = 2 * params.cartesian_step
    while True:
        segments, T_prev = [], T_from
        for k in keep:
            segments.append(interpolate_line(T_prev, poses[k], step))
            T_prev = poses[k]
        total = sum(len(d) for d in segments)
        path, q_cur, T_cur, done = [], np.asarray(q, dtype=float), T_from, 0
        try:
            for k, dense in zip(keep, segments):
                base = ('waypoints', q_cur.tobytes(), np.asarray(T_cur).tobytes(),
                        np.array(dense).tobytes())
                if base in solved:   # a solved segment: the same whatever its numbering
                    sols = solved[base]
                else:
                    sols = _solve_cached(solved, base + (done, total), ik, dense, q_cur,
                                         'waypoints', params.max_joint_jump, T_from=T_cur,
                                         numbering=(done, total))
                    solved[base] = sols
                path.extend(sols)
                q_cur, T_cur, done = sols[-1], poses[k], done + len(dense)
        except IKError:
            if k not in droppable:
                raise
            keep.remove(k)
            continue
        if kept is not None:
            kept[:] = keep
        return np.array(path)


def _solve_steps(targets, q_start, ik, params, width=None, solved=None, droppable=(),
                 kept=None, q_grasp=None):
    # ``droppable``, ``kept``: indices of the carry poses that may be left out, and those
    # kept (see ``_solve_carry``). ``q_grasp``: the grasp configuration to plan through
    # (pre-grasp and approach then solved from it up, see ``_approach_from_grasp``).
    solved = {} if solved is None else solved
    from_grasp = None
    if q_grasp is not None:
        T_pre, T_grasp = targets[0][1][-1], targets[1][1][-1]
        key = ('approach from', np.asarray(q_grasp, float).tobytes(),
               np.asarray(T_pre).tobytes(), np.asarray(T_grasp).tobytes())
        from_grasp = _solve_cached(solved, key, ik, T_pre, T_grasp, q_start, params,
                                   q_grasp, solve=_approach_from_grasp)
    opening = params.open_width if width is None else \
        min(params.open_width, float(width) + 2.0 * params.open_margin)
    steps = []
    q = np.asarray(q_start, dtype=float)
    T_prev = None
    for name, poses in targets:
        T_start = T_prev   # where the arm is (Cartesian) when the step begins
        if name == 'waypoints' and T_prev is not None:
            keep = []
            path = _solve_carry(ik, T_prev, poses, q, params, solved, droppable, keep)
            if kept is not None:
                kept[:] = keep
            poses = [poses[k] for k in keep]
        elif from_grasp is not None and name in ('pre-grasp', 'approach'):
            path = from_grasp[0] if name == 'pre-grasp' else from_grasp[1]
        else:
            if name in ('approach', 'lift', 'place', 'retreat') and T_prev is not None:
                dense = interpolate_line(T_prev, poses[-1], params.cartesian_step)
            else:
                dense = list(poses)
            free = name == 'pre-grasp'   # a free joint-space move from wherever the arm is
            key = (name, q.tobytes(), np.array(dense).tobytes())
            try:
                path = _solve_cached(solved, key, ik, dense, q, name,
                                     None if free else params.max_joint_jump,
                                     restarts=3 if free else 0,
                                     T_from=None if free else T_start)
            except IKError as exc:
                if name != 'approach' or steps[0].name != 'pre-grasp':
                    raise
                # The pre-grasp configuration may be one from which the straight way down
                # turns the wrist over (near the robot's base): solve from the grasp up.
                up_key = ('approach from the grasp', np.asarray(q_start, float).tobytes(),
                          np.asarray(T_start).tobytes(), np.asarray(poses[-1]).tobytes())
                try:
                    pre, path = _solve_cached(solved, up_key, ik, T_start, poses[-1], q_start,
                                              params, solve=_approach_from_grasp)
                except IKError:
                    raise exc from None
                steps[0] = Step('pre-grasp', 'arm', positions=pre,
                                times=time_joint_path(pre, q_start, params),
                                targets=steps[0].targets)
                q = pre[-1]
        steps.append(Step(name, 'arm', positions=path, times=time_joint_path(path, q, params),
                          targets=list(poses)))
        q = path[-1]
        T_prev = poses[-1]
        if name == 'pre-grasp':
            # Open after the first move: the first trajectory goes out without waiting.
            steps.append(Step('open', 'gripper', width=opening))
        if name == 'approach':
            steps.append(Step('close', 'gripper', width=params.close_width))
        if name == 'place':
            steps.append(Step('open', 'gripper', width=opening))
    return steps
