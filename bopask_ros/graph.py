"""Start the pick-and-place node graph in one process (no ROS launch needed).

The same node classes and YAML files as ``launch/pick_place.launch.py``, spun by one
``MultiThreadedExecutor``. Arguments use launch syntax, ``name:=value``:

- ``camera_backend:=sim|realsense``, ``vlm_backend:=oracle|transformers|scripted``,
  ``model_path:=DIR``, ``executor_backend:=ik|moveit``, ``config:=FILE`` (parameters,
  default config/pick_place.yaml; config/extrinsics.yaml is always read after it),
  ``sim:=true|false`` (default: true when the camera backend is sim);
- ``NODE.PARAM:=value`` sets one parameter, e.g. ``sim_node.seed:=3``.

The sim node must share the process with the sim camera and the oracle (``sim_runtime``).
"""

import importlib
import threading

import yaml

from bopask_ros import ros_common as rc

NODES = (
    ('sim_node', 'bopask_ros.sim_node', 'SimNode'),
    ('camera_node', 'bopask_ros.camera_node', 'CameraNode'),
    ('vlm_node', 'bopask_ros.vlm_node', 'VlmNode'),
    ('backprojection_node', 'bopask_ros.backprojection_node', 'BackprojectionNode'),
    ('executor_node', 'bopask_ros.executor_node', 'ExecutorNode'),
)
LAUNCH_ARGUMENTS = {
    'camera_backend': ('camera_node', 'backend'),
    'vlm_backend': ('vlm_node', 'backend'),
    'model_path': ('vlm_node', 'model_path'),
    'executor_backend': ('executor_node', 'backend'),
}
EXTRINSICS = 'extrinsics.yaml'


def parse_assignments(items):
    """Parse ``['name:=value', ...]`` into a dict (values read as YAML scalars/lists)."""
    out = {}
    for item in items:
        if ':=' not in item:
            raise ValueError(f'argument {item!r} is not name:=value')
        name, value = item.split(':=', 1)
        if not name:
            raise ValueError(f'argument {item!r} has no name')
        try:
            out[name.strip()] = yaml.safe_load(value) if value != '' else ''
        except yaml.YAMLError:
            out[name.strip()] = value
    return out


def resolve(arguments):
    """Return (config files, {node: {param: value}} overrides, [node names to start])."""
    args = dict(arguments)
    config = args.pop('config', rc.DEFAULT_CONFIG)
    files = [rc.config_path(config), rc.config_path(EXTRINSICS)]
    overrides = {name: {} for name, _, _ in NODES}
    for key, (node, param) in LAUNCH_ARGUMENTS.items():
        if key in args:
            overrides[node][param] = args.pop(key)
    sim = args.pop('sim', None)
    for key, value in args.items():
        node, _, param = key.partition('.')
        if node not in overrides or not param:
            raise ValueError(f'unknown argument {key!r}: use one of '
                             f'{sorted(LAUNCH_ARGUMENTS) + ["config", "sim"]} or NODE.PARAM '
                             f'with NODE in {[n for n, _, _ in NODES]}')
        overrides[node][param] = value
    camera_backend = overrides['camera_node'].get('backend')
    if camera_backend is None:
        camera_backend = rc.load_node_parameters(files[0], 'camera_node').get('backend', 'sim')
    if sim is None:
        sim = camera_backend == 'sim'
    names = [n for n, _, _ in NODES if n != 'sim_node' or sim]
    return files, overrides, names


def node_parameters(node_name, files, overrides):
    """Merged parameters of one node: files in order, then the overrides."""
    values = {}
    for path in files:
        values.update(rc.load_node_parameters(path, node_name))
    values.update(overrides.get(node_name, {}))
    return values


class Graph:
    """The node graph in this process; ``start()`` then ``spin_in_thread()`` or ``spin()``."""

    def __init__(self, arguments=None, context=None, extra_nodes=()):
        self.files, self.overrides, self.names = resolve(arguments or {})
        self.context = context
        self.nodes = {}
        self.extra_nodes = list(extra_nodes)
        self.executor = None
        self._thread = None

    def start(self):
        """Create the nodes (sim first: the sim camera and the oracle need its world)."""
        import rclpy
        from rclpy.executors import MultiThreadedExecutor
        if self.context is None:
            self.context = rclpy.Context()
            rclpy.init(context=self.context, domain_id=rc.domain_id())
        for name, module_name, class_name in NODES:
            if name not in self.names:
                continue
            cls = getattr(importlib.import_module(module_name), class_name)
            params = node_parameters(name, self.files, self.overrides)
            self.nodes[name] = cls(context=self.context,
                                   parameter_overrides=rc.parameter_overrides(params))
        self.executor = MultiThreadedExecutor(num_threads=6, context=self.context)
        for node in list(self.nodes.values()) + self.extra_nodes:
            self.executor.add_node(node)
        return self

    def add_node(self, node):
        """Spin another node (e.g. a demo client) with the graph."""
        self.extra_nodes.append(node)
        if self.executor is not None:
            self.executor.add_node(node)

    def spin(self):
        """Spin until shutdown (blocks)."""
        self.executor.spin()

    def spin_in_thread(self):
        """Spin on a background thread."""
        self._thread = threading.Thread(target=self.executor.spin, daemon=True)
        self._thread.start()
        return self

    def shutdown(self):
        """Stop spinning, destroy the nodes and the context."""
        import rclpy
        if self.executor is not None:
            self.executor.shutdown(timeout_sec=5.0)
        for node in list(self.extra_nodes) + list(reversed(list(self.nodes.values()))):
            try:
                node.destroy_node()
            except Exception:  # noqa: BLE001 - best effort on the way out
                pass
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        rclpy.try_shutdown(context=self.context)

    @property
    def runtime(self):
        """The SimRuntime of the sim node (None without the sim)."""
        node = self.nodes.get('sim_node')
        return node.runtime if node is not None else None
