"""The ``bopask`` command: the robot half of bopask, with or without a ROS install."""

import sys

from bopask_gen.cli_common import run_cli

COMMANDS = (
    ('demo', 'bopask_ros.demo', 'simulated pick-and-place from language commands'),
    ('launch', 'bopask_ros.launcher', 'start a node graph without a ROS install'),
    ('command', 'bopask_ros.command', 'publish a language command on /bopask/command'),
    ('record', 'bopask_ros.bag_record', 'record camera, command and ground truth to rosbag2'),
    ('replay', 'bopask_ros.bag_replay', 'replay a bag through the graph and score it'),
    ('calib-check', 'bopask_ros.calib_check', 'measure camera-to-robot extrinsic error'),
)


def main(argv=None):
    """Entry point of ``bopask``."""
    return run_cli('bopask', __doc__, COMMANDS, argv)


if __name__ == '__main__':
    sys.exit(main())
