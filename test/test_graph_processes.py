"""The demo's two-process graph: sim, camera and vlm here; back-projection and executor in a child.

The child (``python -m bopask_ros.bopask_graph nodes:=...``) must come up on this process's
ROS domain, be gone after ``graph.shutdown()`` (no orphan), and a child that dies -- at
start-up or later -- must end the wait with an error that says so, not a hang.
(``test_pick_place_e2e`` runs whole episodes through this same two-process graph.)
"""

import os
from pathlib import Path
import signal

import pytest

DOMAIN_ID = 20 + (os.getpid() + 41) % 70


@pytest.fixture(autouse=True)
def domain():
    os.environ['ROS_DOMAIN_ID'] = str(DOMAIN_ID)
    os.environ.setdefault('MUJOCO_GL', 'egl')


def graph_children():
    """Pids of live bopask_graph processes started by this process (any depth)."""
    from bopask_ros.graph_process import PARENT_PID_ENV
    marker = f'{PARENT_PID_ENV}={os.getpid()}'.encode()
    pids = []
    for proc in Path('/proc').iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / 'cmdline').read_bytes()
            environ = (proc / 'environ').read_bytes()
            state = next(line for line in (proc / 'status').read_text().splitlines()
                         if line.startswith('State:'))
        except (OSError, StopIteration):
            continue
        if b'bopask_graph' in cmdline and marker in environ.split(b'\0') \
                and 'zombie' not in state:
            pids.append(int(proc.name))
    return pids


def test_two_process_graph_comes_up_and_leaves_no_process():
    from bopask_ros.demo import start_graph
    from bopask_ros.graph_process import READY_LINE
    graph, client = start_graph({'sim_node.n_objects_max': 3}, real_time_factor=2.0)
    try:
        assert list(graph.nodes) == ['sim_node', 'camera_node', 'vlm_node']
        (child,) = graph.processes
        # Ready means built, not just on the graph (a node shows before its constructor ends).
        assert any(line.startswith(READY_LINE) for line in child.tail)
        # Short callbacks: one thread spins them (the multi-threaded executor's polling
        # delayed the child's callbacks by up to half a second).
        assert 'executor:=single' in child.argv
        assert child.process.poll() is None
        assert graph_children() == [child.pid]
        visible = {name for name, _ in client.node.get_node_names_and_namespaces()}
        assert {'backprojection_node', 'executor_node'} <= visible
        child.check()                                  # alive: no error
    finally:
        graph.shutdown()
    assert child.process.returncode == 0, list(child.tail)   # ended by SIGINT, cleanly
    with pytest.raises(ProcessLookupError):
        os.kill(child.pid, 0)
    assert graph_children() == []


def test_a_child_that_exits_at_start_up_fails_clearly():
    from bopask_ros.demo import start_graph
    from bopask_ros.graph_process import GraphProcessError
    from bopask_ros.sim_runtime import get_runtime
    with pytest.raises(GraphProcessError) as err:
        start_graph({'executor_node.backend': 'warp_drive', 'sim_node.n_objects_max': 3},
                     real_time_factor=2.0)
    text = str(err.value)
    assert 'backprojection_node, executor_node' in text and 'exited with code 1' in text
    assert "executor backend 'warp_drive': use ik or moveit" in text   # the child's output
    assert graph_children() == []
    with pytest.raises(RuntimeError, match='no simulator'):
        get_runtime()                                  # the parent's graph was shut down


def test_a_child_that_dies_later_ends_the_wait_with_an_error():
    from bopask_ros.demo import start_graph
    from bopask_ros.graph_process import GraphProcessError
    graph, client = start_graph({'sim_node.n_objects_max': 3}, real_time_factor=2.0)
    try:
        (child,) = graph.processes
        os.kill(child.pid, signal.SIGKILL)
        with pytest.raises(GraphProcessError, match='exited with code -9'):
            client.wait_end(client.mark(), timeout=30.0)
    finally:
        graph.shutdown()
    assert graph_children() == []


def test_an_interrupt_during_start_up_waits_for_the_end_of_start_up():
    """SIGINT inside MuJoCo's import made it an ImportError (exit code 1); now it waits."""
    from bopask_ros.graph_process import interrupt_deferred
    done = []
    with pytest.raises(KeyboardInterrupt):
        with interrupt_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            done.append('the block ran to its end')
    assert done == ['the block ran to its end']
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    with interrupt_deferred():
        pass                                           # no interrupt: nothing raised


def test_a_second_graph_on_the_same_domain_is_refused_by_name():
    """Two demos on one ROS domain would answer each other's commands: refused, with the fix."""
    import rclpy

    from bopask_ros.demo import check_domain_alone, DomainConflictError
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=DOMAIN_ID)
    try:
        here = rclpy.create_node('vlm_node', context=context)
        check_domain_alone(here, ['vlm_node', 'sim_node'])          # alone: fine
        there = rclpy.create_node('vlm_node', context=context)      # another graph's node
        with pytest.raises(DomainConflictError, match=f'ROS domain {DOMAIN_ID} .*vlm_node.*'
                                                      'ROS_DOMAIN_ID'):
            check_domain_alone(here, ['vlm_node', 'sim_node'])
        there.destroy_node()
        here.destroy_node()
    finally:
        rclpy.try_shutdown(context=context)
