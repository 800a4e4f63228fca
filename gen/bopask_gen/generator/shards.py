"""Atomic JSONL shards and the build manifest of a BOP-ASK output folder.

A shard becomes visible only when complete (:mod:`bopask_gen.core.atomic_files`), so a
crash never leaves a partial shard behind and a re-run can trust every ``*.jsonl`` it finds.
The manifest records the settings that decide the content of the shards; resuming with other
settings is refused.
"""

import json
from pathlib import Path

from bopask_gen.core.atomic_files import atomic_text_file, TMP_SUFFIX, write_json_atomic

DATA_DIR = 'data'
MANIFEST = 'manifest.json'
SUMMARY = 'summary.json'


class ManifestMismatchError(ValueError):
    """OUT_DIR holds shards built with other settings; the message lists the differences."""


def write_jsonl_atomic(path, records):
    """Write an iterable of dicts as JSON lines; the file appears only once complete.

    If iterating ``records`` raises, the temporary file is removed and nothing appears.
    Returns the number of lines written.
    """
    count = 0
    with atomic_text_file(path) as f:
        for record in records:
            f.write(json.dumps(record, separators=(',', ':')) + '\n')
            count += 1
    return count


def read_jsonl(path):
    """Read a JSONL file into a list of dicts; a corrupt line raises ValueError naming it."""
    records = []
    with open(path) as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ValueError(f'{path}:{line_no}: not valid JSON ({exc})') from exc
    return records


def shard_name(split, index):
    """File name of shard ``index`` of a split: ``train-00003.jsonl``."""
    return f'{split}-{index:05d}.jsonl'


def shard_paths(out_dir):
    """Sorted paths of the finished shards under ``OUT_DIR/data``."""
    data = Path(out_dir) / DATA_DIR
    return sorted(data.glob('*.jsonl')) if data.is_dir() else []


def remove_stale_temporaries(out_dir):
    """Delete temporary files a killed run left in ``OUT_DIR/data``; return how many."""
    data = Path(out_dir) / DATA_DIR
    stale = list(data.glob(f'.*{TMP_SUFFIX}')) if data.is_dir() else []
    for path in stale:
        path.unlink(missing_ok=True)
    return len(stale)


def check_or_write_manifest(out_dir, settings):
    """Create ``OUT_DIR/manifest.json`` from ``settings`` or check it matches on resume."""
    path = Path(out_dir) / MANIFEST
    if path.is_file():
        try:
            with open(path) as f:
                old = json.load(f)
        except json.JSONDecodeError as exc:
            raise ManifestMismatchError(f'{path}: corrupt manifest ({exc}); '
                                        'use a new --out folder') from exc
        diffs = [f'{k}: {old.get(k)!r} -> {settings.get(k)!r}'
                 for k in sorted(set(old) | set(settings)) if old.get(k) != settings.get(k)]
        if diffs:
            raise ManifestMismatchError(
                f'{path.parent} was built with other settings ({"; ".join(diffs)}); '
                'resuming would mix datasets: use a new --out folder or the same settings'
            )
        return False
    if shard_paths(out_dir):
        raise ManifestMismatchError(
            f'{Path(out_dir) / DATA_DIR} holds shards but no {MANIFEST}: refusing to add to '
            'a folder of unknown origin; use a new --out folder'
        )
    write_json_atomic(path, settings)
    return True
