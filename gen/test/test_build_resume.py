"""Build plumbing: atomic shards, resume after a crash, determinism, process pool, Ray."""

import os
from pathlib import Path
import signal
import subprocess
import sys
import time

import psutil
import pytest

from bopask_gen.generator.build import build, BuildConfig
from bopask_gen.generator.questions import TASKS
from bopask_gen.generator.shards import (
    read_jsonl,
    remove_stale_temporaries,
    shard_paths,
    write_jsonl_atomic,
)

SPLIT = 'train_real'
# Fast tasks for plumbing tests; grasp makes each image slow enough to kill a worker mid-run.
PLUMBING_TASKS = ('pose', 'spatial', 'depth')


def records_of(out_dir):
    return [r for p in shard_paths(out_dir) for r in read_jsonl(p)]


def shard_bytes(out_dir):
    return {p.name: p.read_bytes() for p in shard_paths(out_dir)}


def config(dataset_dir, out_dir, **kw):
    kw.setdefault('tasks', PLUMBING_TASKS)
    return BuildConfig(dataset_dir=str(dataset_dir), split=SPLIT, out_dir=str(out_dir), **kw)


def test_a_failing_shard_write_leaves_nothing_visible(tmp_path):
    def records():
        yield {'id': 'a'}
        raise RuntimeError('worker crashed mid-shard')
    path = tmp_path / 'data' / 'train-00000.jsonl'
    with pytest.raises(RuntimeError):
        write_jsonl_atomic(path, records())
    assert not path.exists()
    assert list((tmp_path / 'data').iterdir()) == []
    assert shard_paths(tmp_path) == []


def test_stale_temporaries_are_removed(tmp_path):
    (tmp_path / 'data').mkdir()
    (tmp_path / 'data' / '.train-00001.jsonl.abc.tmp').write_text('{"id": "half')
    assert remove_stale_temporaries(tmp_path) == 1
    assert shard_paths(tmp_path) == []


def test_same_seed_same_shards_whatever_the_workers(ycbv_subset_dir, tmp_path):
    a, b, c = tmp_path / 'a', tmp_path / 'b', tmp_path / 'c'
    build(config(ycbv_subset_dir, a, seed=5, images_per_shard=3), workers=1, progress=False)
    build(config(ycbv_subset_dir, b, seed=5, images_per_shard=3), workers=2, progress=False)
    assert shard_bytes(a) == shard_bytes(b) and len(shard_bytes(a)) == 4
    build(config(ycbv_subset_dir, c, seed=6, images_per_shard=3), workers=1, progress=False)
    texts = lambda d: [r['conversations'] for r in records_of(d)]  # noqa: E731
    assert texts(a) != texts(c)


def test_rerun_skips_finished_shards_and_refuses_other_settings(ycbv_subset_dir, tmp_path):
    cfg = config(ycbv_subset_dir, tmp_path, limit_images=4, images_per_shard=2,
                 tasks=('pose',))
    first = build(cfg, progress=False)
    mtimes = {p: p.stat().st_mtime_ns for p in shard_paths(tmp_path)}
    again = build(cfg, progress=False)
    assert again['images_this_run'] == 0 and again['qas'] == first['qas']
    assert {p: p.stat().st_mtime_ns for p in shard_paths(tmp_path)} == mtimes
    from bopask_gen.cli import main
    rc = main(['build', str(ycbv_subset_dir), '--split', SPLIT, '--out', str(tmp_path),
               '--tasks', 'pose', '--limit-images', '4', '--images-per-shard', '2',
               '--seed', '9', '--no-progress'])
    assert rc == 2  # another seed would mix two datasets in one folder


def _descendants(pid):
    return psutil.Process(pid).children(recursive=True)


def test_resume_after_a_worker_is_killed(ycbv_subset_dir, tmp_path):
    out = tmp_path / 'out'
    args = [sys.executable, '-m', 'bopask_gen.cli', 'build', str(ycbv_subset_dir),
            '--split', SPLIT, '--out', str(out), '--tasks', 'pose,grasp', '--workers', '2',
            '--images-per-shard', '1', '--no-progress', '--seed', '1']
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    killed = None
    while time.monotonic() < deadline and proc.poll() is None:
        if shard_paths(out):  # the run is under way: kill one pool worker
            workers = [p for p in _descendants(proc.pid)
                       if 'resource_tracker' not in ' '.join(p.cmdline())
                       and p.ppid() != proc.pid]
            if workers:
                killed = workers[-1].pid
                os.kill(killed, signal.SIGKILL)
                break
        time.sleep(0.05)
    _, err = proc.communicate(timeout=120)
    assert killed is not None, 'the run ended before a worker could be killed'
    assert proc.returncode == 1, err
    assert 'worker process died' in err and 're-run' in err
    partial = shard_paths(out)
    assert 1 <= len(partial) < 10
    for path in partial:  # every visible shard is complete and readable
        assert read_jsonl(path)
    assert not list((out / 'data').glob('*.jsonl.*'))
    rerun = subprocess.run(args, capture_output=True, text=True, timeout=180)
    assert rerun.returncode == 0, rerun.stderr
    ids = [r['id'] for r in records_of(out)]
    assert len(ids) == len(set(ids))
    # The same QAs as an uninterrupted build (byte identity is test_all_tasks_deterministic).
    clean = tmp_path / 'clean'
    build(config(ycbv_subset_dir, clean, seed=1, images_per_shard=1, tasks=('pose', 'grasp')),
          progress=False)
    assert ids == [r['id'] for r in records_of(clean)]
    assert sorted(shard_bytes(out)) == sorted(shard_bytes(clean))


def test_all_tasks_deterministic(ycbv_subset_dir, tmp_path):
    runs = []
    for name in ('a', 'b'):
        build(config(ycbv_subset_dir, tmp_path / name, tasks=TASKS, limit_images=3, seed=2),
              progress=False)
        runs.append(shard_bytes(tmp_path / name))
    assert runs[0] == runs[1]


def test_ray_backend_matches_the_local_build(ycbv_subset_dir, tmp_path):
    local, remote = tmp_path / 'local', tmp_path / 'ray'
    build(config(ycbv_subset_dir, local, limit_images=3, tasks=('pose', 'depth')),
          progress=False)
    summary = build(config(ycbv_subset_dir, remote, limit_images=3, tasks=('pose', 'depth')),
                    workers=1, ray_address='local', progress=False)
    assert summary['workers'] == 'ray:local'
    assert shard_bytes(local) == shard_bytes(remote)
    assert Path(remote / records_of(remote)[0]['image']).is_file()
