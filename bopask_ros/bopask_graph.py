"""``ros2 run bopask_ros bopask_graph [name:=value ...]``: every node in one process.

The launch file uses this for the simulator (the sim node, the sim camera and the oracle
share one MuJoCo world in-process); it is ``bopask launch pick_place`` as an executable.
"""

import sys


def main(args=None):
    """Start the graph with ``name:=value`` arguments (ROS arguments are ignored)."""
    from bopask_ros.graph import Graph, parse_assignments
    argv = list(sys.argv[1:] if args is None else args)
    if '--ros-args' in argv:
        argv = argv[:argv.index('--ros-args')]
    graph = Graph(parse_assignments(argv)).start()
    try:
        graph.spin()
    except KeyboardInterrupt:
        pass
    finally:
        graph.shutdown()


if __name__ == '__main__':
    main()
