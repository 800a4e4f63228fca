"""rosbag2 read/write helpers over ``rosbags`` (no ROS install needed), with clear errors.

- ``BagWriter``: a rosbag2 directory (MCAP by default, or sqlite3) that ``ros2 bag info/play``
  and Foxglove read: messages are written as the CDR bytes received from DDS, and each
  topic carries its message definition and type hash from the ROS 2 Kilted typestore.
- ``BagReader``: reads rosbag2 directories written by ``bopask record`` or by ``ros2 bag
  record`` (either storage plugin). Every failure -- missing or malformed metadata.yaml,
  a missing, truncated or corrupt storage file -- is a ``BagError`` naming the bag and the
  reason, also when it happens in the middle of ``messages()``.
- ``message_class`` / ``deserialize``: the rclpy class of a type name such as
  ``sensor_msgs/msg/Image`` (None when not importable: callers skip that topic with a
  warning) and CDR -> rclpy message.
"""

from dataclasses import dataclass
import importlib
from pathlib import Path

STORAGES = ('mcap', 'sqlite3')


class BagError(RuntimeError):
    """A bag that cannot be opened, read or written; the message names the path."""


@dataclass
class TopicInfo:
    """One topic of a bag."""

    topic: str
    msgtype: str
    count: int


def message_class(msgtype):
    """Return the rclpy message class of ``pkg/msg/Name`` (or ``pkg/Name``), None if unknown."""
    parts = str(msgtype).split('/')
    if len(parts) == 2:
        parts = [parts[0], 'msg', parts[1]]
    if len(parts) != 3 or not all(parts):
        return None
    try:
        module = importlib.import_module(f'{parts[0]}.{parts[1]}')
        return getattr(module, parts[2])
    except (ImportError, AttributeError):
        return None


def deserialize(raw, msgtype):
    """CDR bytes -> rclpy message of ``msgtype`` (ValueError when the type is unknown)."""
    from rclpy.serialization import deserialize_message
    cls = message_class(msgtype)
    if cls is None:
        raise ValueError(f'message type {msgtype!r} is not importable here')
    return deserialize_message(bytes(raw), cls)


def serialize(msg):
    """Serialise an rclpy message to CDR bytes."""
    from rclpy.serialization import serialize_message
    return serialize_message(msg)


def typestore():
    """The ROS 2 Kilted typestore of ``rosbags`` (message definitions for MCAP schemas)."""
    from rosbags.typesys import get_typestore, Stores
    return get_typestore(Stores.ROS2_KILTED)


class BagReader:
    """A rosbag2 directory opened for reading (use as a context manager)."""

    def __init__(self, path):
        from rosbags.rosbag2 import Reader
        self.path = Path(path)
        if not self.path.exists():
            raise BagError(f'{self.path}: no such bag (expected a rosbag2 directory)')
        if self.path.is_file():
            raise BagError(f'{self.path}: is a file; give the rosbag2 directory that holds it '
                           f'and its metadata.yaml')
        try:
            self._reader = Reader(self.path)
            self._reader.open()
        except Exception as exc:  # noqa: BLE001 - rosbags raises many types; all mean "bad bag"
            raise BagError(f'{self.path}: cannot open bag [{self._files()}] '
                           f'({type(exc).__name__}: {exc})') from exc

    def _files(self):
        """The bag's files, named in errors (the storage file is often the broken one)."""
        try:
            return ', '.join(sorted(p.name for p in self.path.iterdir())) or 'empty directory'
        except OSError:
            return 'unlistable directory'

    def __enter__(self):
        """Context manager entry."""
        return self

    def __exit__(self, *exc):
        """Close the bag."""
        self.close()

    def close(self):
        """Close the storage files."""
        try:
            self._reader.close()
        except Exception:  # noqa: BLE001 - closing a broken bag must not hide the real error
            pass

    @property
    def connections(self):
        """The rosbags connections (topic, msgtype, msgcount ...)."""
        return list(self._reader.connections)

    def topics(self):
        """[TopicInfo] in connection order (a topic may appear once per connection)."""
        return [TopicInfo(c.topic, c.msgtype, int(c.msgcount)) for c in self.connections]

    @property
    def start_ns(self):
        """Log time of the first message (ns)."""
        return int(self._reader.start_time)

    @property
    def duration_ns(self):
        """Log time span of the bag (ns)."""
        return int(self._reader.duration)

    @property
    def message_count(self):
        """Number of messages according to the metadata."""
        return int(self._reader.message_count)

    def messages(self, topics=None):
        """Yield (connection, log_time_ns, cdr_bytes) in log-time order.

        A storage error mid-way (truncated or corrupt file) raises BagError naming the bag.
        """
        conns = [c for c in self.connections if topics is None or c.topic in topics]
        try:
            for conn, t_ns, raw in self._reader.messages(connections=conns):
                yield conn, int(t_ns), raw
        except BagError:
            raise
        except Exception as exc:  # noqa: BLE001 - rosbags/mcap/sqlite errors of a broken file
            raise BagError(f'{self.path}: bag unreadable mid-way [{self._files()}] '
                           f'({type(exc).__name__}: {exc})') from exc


class BagWriter:
    """A new rosbag2 directory (``storage`` mcap or sqlite3) written with ``rosbags``."""

    def __init__(self, path, storage='mcap'):
        from rosbags.rosbag2 import StoragePlugin, Writer
        if storage not in STORAGES:
            raise BagError(f'{path}: storage {storage!r} unknown; use one of {STORAGES}')
        self.path = Path(path)
        plugin = StoragePlugin.MCAP if storage == 'mcap' else StoragePlugin.SQLITE3
        self._types = typestore()
        try:
            self._writer = Writer(self.path, version=9, storage_plugin=plugin)
            self._writer.open()
        except Exception as exc:  # noqa: BLE001 - existing path, unwritable folder ...
            raise BagError(f'{self.path}: cannot create bag ({exc})') from exc
        self._conns = {}
        self.counts = {}

    def knows(self, msgtype):
        """True when the typestore has a definition of ``msgtype`` (needed to write it)."""
        return msgtype in self._types.fielddefs

    def add_topic(self, topic, msgtype):
        """Register a topic (once); raise BagError for a type without a definition."""
        if topic in self._conns:
            return self._conns[topic]
        if not self.knows(msgtype):
            raise BagError(f'{self.path}: no message definition for {msgtype!r} (topic '
                           f'{topic}) in the ROS 2 Kilted typestore')
        conn = self._writer.add_connection(topic, msgtype, typestore=self._types)
        self._conns[topic] = conn
        self.counts[topic] = 0
        return conn

    def set_custom_data(self, key, value):
        """Store a string in the metadata's ``custom_data`` map (rosbag2 version >= 6)."""
        self._writer.set_custom_data(str(key), str(value))

    def write(self, topic, t_ns, raw):
        """Write one CDR-serialised message on a registered topic at log time ``t_ns``."""
        self._writer.write(self._conns[topic], int(t_ns), bytes(raw))
        self.counts[topic] += 1

    def close(self):
        """Finish the bag (writes metadata.yaml)."""
        self._writer.close()

    def __enter__(self):
        """Context manager entry."""
        return self

    def __exit__(self, *exc):
        """Finish the bag."""
        self.close()


class ThreadedBagWriter:
    """A BagWriter driven from one thread of its own (sqlite3 connections are thread-bound).

    Same interface as BagWriter; ``add_topic`` and ``write`` may be called from any thread
    (ROS callbacks) and are applied in order; creation and ``close`` errors are raised to the
    caller.
    """

    def __init__(self, path, storage='mcap'):
        import queue
        import threading
        self.path = Path(path)
        self._queue = queue.Queue()
        self._ready = threading.Event()
        self._error = None
        self._writer = None
        self._thread = threading.Thread(target=self._run, args=(path, storage),
                                        name='bopask-bag-writer', daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error
        self.counts = self._writer.counts
        self._known = self._writer.knows

    def _run(self, path, storage):
        try:
            self._writer = BagWriter(path, storage)
        except BagError as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        while True:
            op, args, done = self._queue.get()
            try:
                if op == 'close':
                    self._writer.close()
                    done.set()
                    return
                getattr(self._writer, op)(*args)
            except Exception as exc:  # noqa: BLE001 - kept for the caller of close()
                self._error = self._error or BagError(f'{self.path}: {op} failed ({exc})')
            if done is not None:
                done.set()

    def knows(self, msgtype):
        """True when the typestore has a definition of ``msgtype``."""
        return self._known(msgtype)

    def add_topic(self, topic, msgtype):
        """Register a topic (BagError for a type without a definition, raised here)."""
        import threading
        if not self.knows(msgtype):
            raise BagError(f'{self.path}: no message definition for {msgtype!r} (topic '
                           f'{topic}) in the ROS 2 Kilted typestore')
        done = threading.Event()
        self._queue.put(('add_topic', (topic, msgtype), done))
        done.wait()

    def set_custom_data(self, key, value):
        """Queue a ``custom_data`` entry of the metadata."""
        self._queue.put(('set_custom_data', (key, value), None))

    def write(self, topic, t_ns, raw):
        """Queue one CDR-serialised message."""
        self._queue.put(('write', (topic, t_ns, bytes(raw)), None))

    def close(self):
        """Write what is queued, finish the bag; raise the first error met."""
        import threading
        done = threading.Event()
        self._queue.put(('close', (), done))
        done.wait()
        self._thread.join()
        if self._error is not None:
            raise self._error

    def __enter__(self):
        """Context manager entry."""
        return self

    def __exit__(self, *exc):
        """Finish the bag."""
        self.close()
