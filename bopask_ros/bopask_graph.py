"""``ros2 run bopask_ros bopask_graph [name:=value ...]``: the graph's nodes in one process.

Every node of the graph, or those of ``nodes:=a,b``. The launch file uses it for the
simulator (``nodes:=sim_node,camera_node,vlm_node``: the sim node, the sim camera and the
oracle share one MuJoCo world in-process); ``bopask demo`` starts it as a child process for
the back-projection and executor nodes (``graph_process``). Without ``nodes:=`` it is
``bopask launch pick_place`` as an executable.
"""

import sys


def main(args=None):
    """Start the graph with ``name:=value`` arguments (ROS arguments are ignored)."""
    from bopask_ros.graph import Graph, parse_assignments
    from bopask_ros.graph_process import announce_ready, follow_parent, interrupt_deferred
    follow_parent()
    argv = list(sys.argv[1:] if args is None else args)
    ros_args = [sys.argv[0]]    # name:=value are ours, not remapping rules for rcl
    if '--ros-args' in argv:
        argv, ros_args = argv[:argv.index('--ros-args')], ros_args + argv[argv.index(
            '--ros-args'):]
    graph = Graph(parse_assignments(argv), ros_args=ros_args)
    try:
        with interrupt_deferred():
            graph.start()
        announce_ready(graph.nodes)
        graph.spin()
    except KeyboardInterrupt:
        pass
    finally:
        graph.shutdown()


if __name__ == '__main__':
    main()
