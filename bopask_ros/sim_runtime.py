"""The MuJoCo world run on its own thread: physics, trajectory following, camera frames.

One ``SimRuntime`` per process owns a ``bopask_gen.sim.world.World``. Every MuJoCo call
(physics, rendering) happens on the runtime's thread -- an EGL/OSMesa context belongs to
one thread, and ROS callbacks run on executor threads -- so other code talks to it through
thread-safe methods: ``submit_trajectory``, ``set_gripper``, ``latest_frame``,
``joint_state``, ``add_frame_listener`` (called after each render) and ``call(fn)`` (run
``fn(world)`` on the sim thread and return its result).

Design choice: the sim node (the robot's controller), the camera node's ``sim`` backend and
the oracle VLM share this runtime in-process (``get_runtime()``), so these three nodes run
in one process (``bopask launch pick_place``, ``bopask demo``, or the ``bopask_graph``
executable in the launch file); the other nodes may run elsewhere. Physics runs at
``real_time_factor`` times the wall clock; image stamps are wall-clock time so age checks
work across processes.
"""

from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass
import queue
import threading
import time

import numpy as np

from bopask_gen.core.transforms import invert_transform

_RUNTIME = None
_RUNTIME_LOCK = threading.Lock()


@dataclass
class Frame:
    """One rendered RGB-D frame with the ground truth at the instant it was taken."""

    stamp_ns: int
    rgb: np.ndarray
    depth_m: np.ndarray
    K: np.ndarray
    T_world_camera: np.ndarray
    object_poses: list      # [(obj_id, T_world_obj)]
    seq: int


@dataclass
class JointState:
    """Measured arm and finger positions (radians / metres per finger)."""

    stamp_ns: int
    names: list
    positions: np.ndarray
    velocities: np.ndarray
    gripper_opening: float


class SimRuntime:
    """A World stepped in (scaled) real time on a dedicated thread."""

    def __init__(self, world_factory, real_time_factor=1.0, camera_rate_hz=5.0,
                 camera_enabled=True):
        self._factory = world_factory
        self.real_time_factor = float(real_time_factor)
        self.camera_period = 1.0 / max(float(camera_rate_hz), 1e-3)
        self.camera_enabled = camera_enabled
        self._calls = queue.Queue()
        self._lock = threading.Lock()
        self._frame = None
        self._frames = deque(maxlen=30)
        self._frame_listeners = []
        self._listeners_lock = threading.RLock()
        self._joint_state = None
        self._trajectory = None        # (t0_sim, times (M,), positions (M+1, 7) incl. start)
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._error = None
        self._seq = 0
        self._max_z = None
        self._track_every = 10
        self.world = None
        self._thread = threading.Thread(target=self._run, name='bopask-sim', daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error

    # ------------------------------------------------------------------ public, any thread
    def call(self, fn, timeout=60.0):
        """Run ``fn(world)`` on the sim thread and return its result (re-raises errors)."""
        if threading.current_thread() is self._thread:
            return fn(self.world)
        fut = Future()
        self._calls.put((fn, fut))
        return fut.result(timeout=timeout)

    def submit_trajectory(self, joint_names, times, positions):
        """Follow a joint trajectory (times from now in seconds, (M, 7) positions)."""
        from bopask_gen.sim import robot
        order = [list(joint_names).index(n) for n in robot.ARM_JOINTS]
        positions = np.asarray(positions, dtype=float)[:, order]
        times = np.asarray(times, dtype=float)

        def start(world):
            self._trajectory = (world.time, times, np.vstack([world.arm_targets(), positions]))
        self.call(start)

    def set_gripper(self, opening):
        """Command the finger opening in metres."""
        self.call(lambda world: world.set_gripper_opening(opening))

    def latest_frame(self):
        """The most recent rendered Frame (or None before the first)."""
        with self._lock:
            return self._frame

    def add_frame_listener(self, fn):
        """Call ``fn()`` on the sim thread after each new frame (keep it short: a trigger)."""
        with self._listeners_lock:
            self._frame_listeners.append(fn)

    def remove_frame_listener(self, fn):
        """Stop calling ``fn``; once this returns it is neither running nor called again."""
        with self._listeners_lock:
            if fn in self._frame_listeners:
                self._frame_listeners.remove(fn)

    def frame_at(self, stamp_ns):
        """The recent Frame with this stamp (None when it has left the history)."""
        with self._lock:
            for frame in self._frames:
                if frame.stamp_ns == stamp_ns:
                    return frame
        return None

    def joint_state(self):
        """The most recent JointState (or None)."""
        with self._lock:
            return self._joint_state

    def trajectory_active(self):
        """True while a submitted trajectory is still being followed."""
        return self._trajectory is not None

    def start_tracking(self):
        """Start recording each object's highest centre height (lift checks)."""
        def start(world):
            self._max_z = np.array([world.object_pose(o.index)[2, 3] for o in world.objects])
        self.call(start)

    def max_heights(self):
        """(N,) highest world z of each object centre since ``start_tracking``."""
        return self.call(lambda world: None if self._max_z is None else self._max_z.copy())

    def reset(self, world_factory=None):
        """Replace the world (a new episode); returns once the new world is running."""
        def swap(_):
            if world_factory is not None:
                self._factory = world_factory
            if self.world is not None:
                self.world.close()
            self.world = self._factory()
            self._trajectory = None
            self._max_z = None
            with self._lock:
                self._frame = None
                self._frames.clear()
            self._sync_clock()
        self.call(swap, timeout=120.0)

    def wait_for_frame(self, after_seq=-1, timeout=10.0):
        """Block until a frame newer than ``after_seq`` exists; return it (None on timeout)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            frame = self.latest_frame()
            if frame is not None and frame.seq > after_seq:
                return frame
            time.sleep(0.01)
        return None

    def close(self):
        """Stop the thread and free the renderer."""
        self._stop.set()
        self._thread.join(timeout=10.0)

    # ------------------------------------------------------------------ sim thread
    def _sync_clock(self):
        self._wall0 = time.monotonic()
        self._sim0 = self.world.time
        self._next_render = 0.0

    def _run(self):
        try:
            self.world = self._factory()
            self._sync_clock()
        except Exception as exc:  # noqa: BLE001 - reported to the constructor's caller
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            while not self._stop.is_set():
                self._serve_calls()
                self._advance()
                self._publish_state()
                now = time.monotonic()
                if self.camera_enabled and now >= self._next_render:
                    self._render()
                    self._next_render = now + self.camera_period
                time.sleep(0.001)
        finally:
            if self.world is not None:
                self.world.close()

    def _serve_calls(self):
        while True:
            try:
                fn, fut = self._calls.get_nowait()
            except queue.Empty:
                return
            try:
                fut.set_result(fn(self.world))
            except Exception as exc:  # noqa: BLE001 - handed to the caller
                fut.set_exception(exc)

    def _advance(self, max_steps=200):
        world = self.world
        target = self._sim0 + (time.monotonic() - self._wall0) * self.real_time_factor
        steps = 0
        while world.time < target and steps < max_steps:
            self._follow_trajectory(world)
            world.step()
            steps += 1
            if self._max_z is not None and steps % self._track_every == 0:
                z = [world.object_pose(o.index)[2, 3] for o in world.objects]
                np.maximum(self._max_z, z, out=self._max_z)
        if steps == max_steps:
            # Falling behind (slow machine): slip the clock instead of catching up in a burst.
            self._sim0 = world.time
            self._wall0 = time.monotonic()

    def _follow_trajectory(self, world):
        if self._trajectory is None:
            return
        t0, times, positions = self._trajectory
        t = world.time - t0
        if t >= times[-1]:
            world.set_arm_targets(positions[-1])
            self._trajectory = None
            return
        i = int(np.searchsorted(times, t, side='right'))
        t_a = 0.0 if i == 0 else times[i - 1]
        s = (t - t_a) / max(times[i] - t_a, 1e-9)
        world.set_arm_targets(positions[i] + s * (positions[i + 1] - positions[i]))

    def _publish_state(self):
        from bopask_gen.sim import robot
        world = self.world
        q = world.arm_joint_positions()
        dq = world.data.qvel[world._arm_dadr].copy()
        half = world.gripper_opening() / 2.0
        state = JointState(
            stamp_ns=time.time_ns(),
            names=list(robot.ARM_JOINTS) + list(robot.FINGER_JOINTS),
            positions=np.concatenate([q, [half, half]]),
            velocities=np.concatenate([dq, [0.0, 0.0]]),
            gripper_opening=2.0 * half)
        with self._lock:
            self._joint_state = state

    def _render(self):
        world = self.world
        stamp = time.time_ns()
        rgb = world.render_rgb()
        depth = world.render_depth()
        self._seq += 1
        frame = Frame(stamp_ns=stamp, rgb=rgb, depth_m=depth, K=world.K.copy(),
                      T_world_camera=world.T_world_camera, object_poses=world.object_poses(),
                      seq=self._seq)
        with self._lock:
            self._frame = frame
            self._frames.append(frame)
        with self._listeners_lock:
            for fn in self._frame_listeners:
                fn()


def get_runtime(timeout=0.0):
    """Return this process's SimRuntime, waiting up to ``timeout`` s for the sim node."""
    end = time.monotonic() + timeout
    while True:
        with _RUNTIME_LOCK:
            if _RUNTIME is not None:
                return _RUNTIME
        if time.monotonic() >= end:
            raise RuntimeError('no simulator in this process: the sim camera and the oracle '
                               'need the sim node in the same process (bopask launch '
                               'pick_place, bopask demo or the bopask_graph executable)')
        time.sleep(0.05)


def set_runtime(runtime):
    """Register (or clear with None) this process's SimRuntime."""
    global _RUNTIME
    with _RUNTIME_LOCK:
        _RUNTIME = runtime


def base_from_world(T_world_base, T_world_x):
    """Express a world-frame pose in the robot base frame."""
    return invert_transform(T_world_base) @ np.asarray(T_world_x, dtype=float)
