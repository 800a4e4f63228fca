"""Run some of the graph's nodes in a child process: ``python -m bopask_ros.bopask_graph``.

Why: the simulator (physics thread, software renders, image publishing) keeps about
three quarters of a core busy, and Python threads of one process share one GIL, so the
back-projection and executor callbacks waited for it. ``bopask demo`` therefore runs the sim
node, the sim camera and the oracle (which share the MuJoCo world) in its own process and
the back-projection and executor nodes in a child (``CHILD_NODES``).

``GraphProcess`` starts the child with this interpreter, the same graph arguments plus
``nodes:=...``, and this environment (ROS domain id included); forwards its output to this
process's stderr, keeping the last lines for error messages; ``wait_ready`` blocks until the
child has said it is ready (``READY_LINE``, printed once its nodes are built: a node shows on
the ROS graph before its constructor has finished) and its nodes are on the graph; ``check``
raises ``GraphProcessError`` once the child has died; ``stop`` ends it with SIGINT, then
SIGKILL. The child also gets SIGINT when this process dies (Linux ``PR_SET_PDEATHSIG``, set
by ``bopask_graph``): no orphans, even when the parent is killed. The death signal follows
the thread that started the child, so start it from a thread that lives as long as the child
should (the main thread).
"""

from collections import deque
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time

import yaml

from bopask_ros import ros_common as rc

CHILD_NODES = ('backprojection_node', 'executor_node')
# Set in the child's environment: the parent's pid (bopask_graph follows the parent's death).
PARENT_PID_ENV = 'BOPASK_GRAPH_PARENT_PID'
TAIL_LINES = 40
# The child prints this line once every node is built and spinning is about to start.
READY_LINE = 'bopask_graph: nodes ready'


class GraphProcessError(RuntimeError):
    """The child graph process failed to come up or died (the message has its last output)."""


def format_assignments(arguments):
    """``{name: value}`` -> ``['name:=value', ...]`` that ``graph.parse_assignments`` reads back.

    Values go as YAML flow scalars/lists; a string that YAML would read as something else
    (``'1'``, ``'true'``, ``''``) is quoted.
    """
    out = []
    for name, value in arguments.items():
        if isinstance(value, str):
            plain = value != '' and _yaml_or_none(value) == value
            text = value if plain else json.dumps(value)
        else:
            text = json.dumps(value)
        out.append(f'{name}:={text}')
    return out


def _yaml_or_none(text):
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return None


class GraphProcess:
    """One child process running ``nodes`` of the graph with ``arguments``."""

    def __init__(self, arguments, nodes=CHILD_NODES):
        self.nodes = list(nodes)
        # Short callbacks only (the back-projection, the planning): one thread spins them;
        # the multi-threaded executor's polling would delay them by up to half a second.
        arguments = dict({'executor': 'single'}, **arguments)
        self.argv = [sys.executable, '-m', 'bopask_ros.bopask_graph',
                     *format_assignments(dict(arguments, nodes=','.join(self.nodes)))]
        self.process = None
        self.tail = deque(maxlen=TAIL_LINES)
        self._forwarder = None
        self._stopping = False
        self._ready = threading.Event()

    @property
    def pid(self):
        """The child's process id (None before ``start``)."""
        return self.process.pid if self.process is not None else None

    def start(self):
        """Start the child (returns at once; see ``wait_ready``)."""
        env = dict(os.environ, ROS_DOMAIN_ID=str(rc.domain_id()), PYTHONUNBUFFERED='1')
        env[PARENT_PID_ENV] = str(os.getpid())
        # Own process group: a terminal's Ctrl-C reaches only the parent, which stops the
        # child in order (see stop).
        self.process = subprocess.Popen(self.argv, env=env, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        text=True, errors='replace', bufsize=1,
                                        process_group=0)
        self._forwarder = threading.Thread(target=self._forward, name='bopask-graph-output',
                                           daemon=True)
        self._forwarder.start()
        return self

    def _forward(self):
        for line in self.process.stdout:
            self.tail.append(line.rstrip('\n'))
            if line.startswith(READY_LINE):
                self._ready.set()
            try:
                sys.stderr.write(line)
                sys.stderr.flush()
            except (OSError, ValueError):  # stderr closed on the way out: keep draining
                pass

    def describe(self):
        """'the graph process of NODES (pid N)'."""
        return f'the graph process of {", ".join(self.nodes)} (pid {self.pid})'

    def _failure(self, what):
        if self._forwarder is not None:
            self._forwarder.join(timeout=2.0)  # the last lines of a dead child
        lines = '\n'.join(f'    {line}' for line in self.tail) or '    (no output)'
        return GraphProcessError(f'{self.describe()} {what}; command: {" ".join(self.argv)}\n'
                                 f'  its last output:\n{lines}')

    def check(self):
        """Raise GraphProcessError when the child has exited (unless it was stopped)."""
        if self.process is None or self._stopping:
            return
        code = self.process.poll()
        if code is not None:
            raise self._failure(f'exited with code {code}')

    def wait_ready(self, node, timeout=60.0, conditions=None):
        """Wait until the child is ready and its nodes are on the ROS graph, as seen by ``node``.

        ``conditions``: ``{description: callable}``, each must also return True (e.g. a
        subscription of this process matched with a publisher of the child). Raises
        GraphProcessError when the child dies or ``timeout`` s pass, naming what is missing.
        """
        conditions = dict(conditions or {})
        end = time.monotonic() + timeout
        while True:
            self.check()
            visible = {name for name, _ in node.get_node_names_and_namespaces()}
            missing = [] if self._ready.is_set() else ['its ready line']
            missing += [f'node {n}' for n in self.nodes if n not in visible]
            missing += [text for text, ok in conditions.items() if not ok()]
            if not missing:
                return self
            if time.monotonic() > end:
                raise self._failure(f'was not ready within {timeout:.0f} s (missing: '
                                    f'{"; ".join(missing)})')
            time.sleep(0.1)

    def interrupt(self):
        """Send SIGINT once (the child shuts its nodes down and exits)."""
        first, self._stopping = not self._stopping, True
        if first and self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)

    def stop(self, timeout=10.0):
        """End the child: SIGINT, wait up to ``timeout`` s, then SIGKILL; return its code."""
        if self.process is None:
            return None
        self.interrupt()
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10.0)
        if self._forwarder is not None:
            self._forwarder.join(timeout=2.0)
        return self.process.returncode


@contextlib.contextmanager
def interrupt_deferred():
    """Hold SIGINT back until the block ends, then raise KeyboardInterrupt if one came.

    For start-up: an interrupt inside a C extension's import (MuJoCo's) turns into an
    ImportError, and one inside a node's constructor leaves a half-built node behind.
    """
    received = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        raise KeyboardInterrupt


def announce_ready(nodes):
    """Print ``READY_LINE`` (GraphProcess.wait_ready waits for it)."""
    print(f'{READY_LINE}: {", ".join(nodes)}', flush=True)


def follow_parent():
    """In a child of GraphProcess: end on SIGINT, and on the parent's death (Linux).

    SIGINT gets Python's handler even when inherited as ignored; the kernel sends SIGINT when
    the parent dies; a child whose parent is already gone exits at once.
    """
    parent = os.environ.pop(PARENT_PID_ENV, None)
    if parent is None:
        return
    # A parent started in the background by a shell may hand down SIGINT as ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, int(signal.SIGINT), 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the parent's stop() is the only way out
        pass
    if os.getppid() != int(parent):
        raise SystemExit(f'bopask_graph: parent process {parent} is gone')
