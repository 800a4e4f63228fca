"""Files that appear whole or not at all: write to a temporary file beside, then rename.

``os.replace`` is atomic on POSIX, so a crash never leaves a partial dataset file, shard or
cache entry behind, and a re-run can trust every file it finds. Temporary names are hidden
(leading dot) and contain ``TMP_SUFFIX``, so leftovers of a killed run can be found.
"""

import contextlib
import json
import os
from pathlib import Path
import tempfile

TMP_SUFFIX = '.tmp'


@contextlib.contextmanager
def atomic_path(path, extension=''):
    """Yield a temporary Path beside ``path`` that replaces ``path`` if the block completes.

    ``extension`` is appended after ``TMP_SUFFIX`` for writers that choose the format by the
    file name (cv2.imwrite: '.png', numpy.savez: '.npz'). On an error the temporary file is
    removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f'.{path.name}.', suffix=TMP_SUFFIX + extension,
                               dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_text_file(path):
    """Yield a text file that appears at ``path`` (synced to disk) only once complete."""
    with atomic_path(path) as tmp, open(tmp, 'w') as f:
        yield f
        f.flush()
        os.fsync(f.fileno())


def write_json_atomic(path, obj):
    """Write ``obj`` as pretty JSON to ``path`` through a temporary file and a rename."""
    with atomic_text_file(path) as f:
        json.dump(obj, f, indent=1)
        f.write('\n')
