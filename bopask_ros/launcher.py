"""``bopask launch pick_place [name:=value ...]``: the node graph without a ROS install.

Starts the nodes of ``launch/pick_place.launch.py`` with the same YAML files in this process
(one rclpy executor) and spins until Ctrl-C. Arguments (launch syntax):
``camera_backend:=sim|realsense``, ``vlm_backend:=oracle|transformers|scripted``,
``model_path:=DIR``, ``executor_backend:=ik|moveit``, ``config:=FILE``, ``sim:=true|false``,
``executor:=multi|single`` (rclpy's multi-threaded executor, the default, or the
single-threaded one for nodes with short callbacks only), ``nodes:=a,b`` (only these
nodes here, e.g. ``nodes:=backprojection_node,executor_node`` beside another process
running ``nodes:=sim_node,camera_node,vlm_node``), and
``NODE.PARAM:=value`` for any node parameter (e.g. ``sim_node.seed:=4``).

Options go before the launch name (``bopask launch --duration 60 pick_place ...``).

Example::

    bopask launch pick_place sim_node.real_time_factor:=2.0 &
    bopask command "pick up the mustard bottle and put it next to the soup can"
"""

LAUNCH_FILES = ('pick_place',)


def add_arguments(parser):
    """Arguments of ``bopask launch``."""
    parser.add_argument('launch', choices=LAUNCH_FILES, help='which graph to start')
    parser.add_argument('args', nargs='*', metavar='name:=value',
                        help='launch arguments and NODE.PARAM overrides')
    parser.add_argument('--duration', type=float, default=None,
                        help='stop after this many seconds (default: run until Ctrl-C)')


def run(args):
    """Entry point of ``bopask launch``."""
    import threading

    from bopask_ros.graph import Graph, parse_assignments
    try:
        graph = Graph(parse_assignments(args.args))
    except (ValueError, FileNotFoundError) as exc:
        print(f'launch: {exc}')
        return 2
    graph.start()
    print(f'bopask launch {args.launch}: running {", ".join(graph.nodes)} '
          f'(config {", ".join(str(f) for f in graph.files)}); Ctrl-C to stop', flush=True)
    try:
        if args.duration is None:
            graph.spin()
        else:
            graph.spin_in_thread()
            threading.Event().wait(args.duration)
    except KeyboardInterrupt:
        pass
    finally:
        graph.shutdown()
    return 0
