"""Start the pick-and-place node graph, or some of its nodes, in one process (no ROS launch).

The same node classes and YAML files as ``launch/pick_place.launch.py``, spun by one
rclpy executor. Arguments use launch syntax, ``name:=value``:

- ``camera_backend:=sim|realsense``, ``vlm_backend:=oracle|transformers|scripted``,
  ``model_path:=DIR``, ``executor_backend:=ik|moveit``, ``config:=FILE`` (parameters,
  default config/pick_place.yaml; config/extrinsics.yaml is always read after it),
  ``sim:=true|false`` (default: true when the camera backend is sim);
- ``nodes:=a,b`` starts only these nodes of ``NODES`` in this process (default: all of the
  graph); another process on the same ROS domain runs the rest;
- ``executor:=multi|single`` spins the nodes with rclpy's ``MultiThreadedExecutor``
  (default: a long callback, such as a model's inference, does not hold up the others) or
  its ``SingleThreadedExecutor`` (for short callbacks: the multi-threaded one polls while a
  callback runs, keeping a core and the GIL busy, and other threads of the process then
  wait for hundreds of milliseconds -- the demo's child process uses it);
- ``NODE.PARAM:=value`` sets one parameter, e.g. ``sim_node.seed:=3``.

The sim node must share the process with the sim camera and the oracle (``sim_runtime``):
a selection that splits them is refused.
"""

import importlib
import threading
import time

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


EXECUTORS = ('multi', 'single')


def executor_kind(arguments):
    """The ``executor:=`` argument (default 'multi'); refuses other values."""
    kind = str(arguments.get('executor', 'multi'))
    if kind not in EXECUTORS:
        raise ValueError(f'executor:={kind!r}: use one of {list(EXECUTORS)}')
    return kind


def resolve(arguments):
    """Return (config files, {node: {param: value}} overrides, [node names to start])."""
    args = dict(arguments)
    args.pop('executor', None)
    selection = args.pop('nodes', None)
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
            known = sorted(LAUNCH_ARGUMENTS) + ['config', 'executor', 'nodes', 'sim']
            raise ValueError(f'unknown argument {key!r}: use one of {known} or NODE.PARAM '
                             f'with NODE in {[n for n, _, _ in NODES]}')
        overrides[node][param] = value
    camera_backend = overrides['camera_node'].get('backend')
    if camera_backend is None:
        camera_backend = rc.load_node_parameters(files[0], 'camera_node').get('backend', 'sim')
    if sim is None:
        sim = camera_backend == 'sim'
    names = [n for n, _, _ in NODES if n != 'sim_node' or sim]
    if selection is not None:
        names = select_nodes(names, selection, files, overrides)
    return files, overrides, names


def select_nodes(names, selection, files, overrides):
    """The nodes of ``names`` named in ``selection`` ('a,b' or a list), in graph order.

    Refuses unknown names, nodes the graph does not run (sim_node with ``sim:=false``) and
    selections that split the simulator from the nodes that use its in-process world.
    """
    if isinstance(selection, str):
        selection = selection.split(',')
    if not isinstance(selection, (list, tuple)):
        raise ValueError(f'nodes:={selection!r}: give node names separated by commas')
    wanted = {str(s).strip() for s in selection}
    unknown = sorted(wanted - {n for n, _, _ in NODES})
    if unknown or not wanted:
        raise ValueError(f'nodes:= names unknown nodes {unknown}: use names of '
                         f'{[n for n, _, _ in NODES]}, separated by commas')
    absent = sorted(wanted - set(names))
    if absent:
        raise ValueError(f'nodes:= selects {absent}, which this graph does not run '
                         f'(its nodes: {names}; sim_node needs sim:=true)')
    if 'sim_node' in names:
        # The sim camera and the oracle use the sim node's world in-process (sim_runtime).
        together = ['sim_node']
        for node, backend in (('camera_node', 'sim'), ('vlm_node', 'oracle')):
            if node_parameters(node, files, overrides).get('backend') == backend:
                together.append(node)
        inside = [n for n in together if n in wanted]
        if inside and len(inside) != len(together):
            raise ValueError(f'nodes:= must select all of {together} or none of them: they '
                             f'share the simulator in-process (selected only {inside})')
    return [n for n in names if n in wanted]


def node_parameters(node_name, files, overrides):
    """Merged parameters of one node: files in order, then the overrides."""
    values = {}
    for path in files:
        values.update(rc.load_node_parameters(path, node_name))
    values.update(overrides.get(node_name, {}))
    return values


def declared_parameters(node_name, files, overrides):
    """The values ``rc.declare`` gives the node in such a graph, without creating it.

    The node module's ``DEFAULTS``, each replaced by the merged parameter of that name
    (parameters the node does not declare are ignored, as rclpy does).
    """
    module = importlib.import_module(dict((n, m) for n, m, _ in NODES)[node_name])
    params = node_parameters(node_name, files, overrides)
    return {name: params.get(name, default) for name, default in module.DEFAULTS.items()}


class Graph:
    """The node graph in this process; ``start()`` then ``spin_in_thread()`` or ``spin()``.

    ``nodes`` (names of ``NODES``) starts only those nodes, like the ``nodes:=`` argument;
    ``ros_args`` go to ``rclpy.init`` (default: ``sys.argv``). Processes added with
    ``add_process`` (``graph_process.GraphProcess``: the rest of the graph) are stopped by
    ``shutdown``.
    """

    def __init__(self, arguments=None, context=None, extra_nodes=(), nodes=None,
                 ros_args=None):
        arguments = dict(arguments or {})
        if nodes is not None:
            arguments['nodes'] = list(nodes)
        self.files, self.overrides, self.names = resolve(arguments)
        self.executor_kind = executor_kind(arguments)
        self.context = context
        self.ros_args = ros_args
        self.nodes = {}
        self.extra_nodes = list(extra_nodes)
        self.processes = []
        self.executor = None
        self._thread = None

    def start(self):
        """Create the nodes (sim first: the sim camera and the oracle need its world)."""
        import rclpy
        from rclpy.executors import MultiThreadedExecutor, SingleThreadedExecutor
        if self.context is None:
            self.context = rclpy.Context()
            rclpy.init(args=self.ros_args, context=self.context, domain_id=rc.domain_id())
        for name, module_name, class_name in NODES:
            if name not in self.names:
                continue
            cls = getattr(importlib.import_module(module_name), class_name)
            params = node_parameters(name, self.files, self.overrides)
            self.nodes[name] = cls(context=self.context,
                                   parameter_overrides=rc.parameter_overrides(params))
        if self.executor_kind == 'single':
            self.executor = SingleThreadedExecutor(context=self.context)
        else:
            self.executor = MultiThreadedExecutor(num_threads=6, context=self.context)
        for node in list(self.nodes.values()) + self.extra_nodes:
            self.executor.add_node(node)
        return self

    def add_node(self, node):
        """Spin another node (e.g. a demo client) with the graph."""
        self.extra_nodes.append(node)
        if self.executor is not None:
            self.executor.add_node(node)

    def add_process(self, process):
        """Stop ``process`` (anything with ``interrupt()`` and ``stop()``) on shutdown."""
        self.processes.append(process)

    def spin(self):
        """Spin until shutdown (blocks); Ctrl-C raises KeyboardInterrupt here.

        The executor spins on a thread while this one waits: rclpy installs no signal
        handler for a context of its own, so a wait set with nothing due (a process without
        timers) would keep Python's SIGINT handler from ever running on this thread.
        """
        self.spin_in_thread()
        while self._thread.is_alive():
            time.sleep(0.2)   # not join(): a join interrupted by Ctrl-C corrupts the thread

    def spin_in_thread(self):
        """Spin on a background thread."""
        self._thread = threading.Thread(target=self.executor.spin, daemon=True)
        self._thread.start()
        return self

    def shutdown(self):
        """Stop the added processes, stop spinning, destroy the nodes and the context."""
        for process in self.processes:
            process.interrupt()  # they wind down while this process does
        try:
            self._shutdown_here()
        finally:
            for process in self.processes:
                process.stop()

    def _shutdown_here(self):
        import rclpy
        if self.executor is not None:
            self.executor.shutdown(timeout_sec=5.0)
        # Spinning ends before the nodes go: a callback still running on a destroyed node
        # raises, and rclpy prints 'exception was never retrieved' on the way out.
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        for node in list(self.extra_nodes) + list(reversed(list(self.nodes.values()))):
            try:
                node.destroy_node()
            except Exception:  # noqa: BLE001 - best effort on the way out
                pass
        if self.context is not None:
            rclpy.try_shutdown(context=self.context)

    @property
    def runtime(self):
        """The SimRuntime of the sim node (None without the sim)."""
        node = self.nodes.get('sim_node')
        return node.runtime if node is not None else None
