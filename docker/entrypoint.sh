#!/usr/bin/env bash
# Source ROS 2 and the bopask workspace, then run the command (default: the launch file).
set -eo pipefail
# shellcheck disable=SC1091  # files of the image, not of this repository
source "/opt/ros/${ROS_DISTRO:-jazzy}/setup.bash"
# shellcheck disable=SC1091
source /opt/bopask_ws/install/setup.bash
exec "$@"
