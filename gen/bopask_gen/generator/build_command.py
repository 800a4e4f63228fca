"""``bopask-gen build``: turn one BOP dataset split into the six-task BOP-ASK dataset.

Writes ``OUT_DIR/data/SPLIT-NNNNN.jsonl`` shards (LLaVA/ShareGPT records with pixel ground
truth), the images they reference under ``OUT_DIR/images/``, ``manifest.json`` (settings,
checked on resume) and ``summary.json``. Re-running the same command resumes.
"""

import logging
import os

from bopask_gen.core.answer_format import COORD_FORMATS
from bopask_gen.core.errors import BopFormatError
from bopask_gen.generator.names import NameTableError, TABLE_KEYS
from bopask_gen.generator.questions import TASKS
from bopask_gen.generator.shards import ManifestMismatchError

LOG = logging.getLogger('bopask_gen.build')


def _tasks(text):
    tasks = tuple(t.strip() for t in text.split(',') if t.strip())
    unknown = [t for t in tasks if t not in TASKS]
    if unknown or not tasks:
        raise ValueError(f'unknown task(s) {unknown or text!r}')
    return tasks


def _positive(text):
    value = int(text)
    if value < 1:
        raise ValueError(f'{value} is not >= 1')
    return value


_tasks.__name__ = f'comma-separated list of {",".join(TASKS)}'
_positive.__name__ = 'integer >= 1'


def add_arguments(parser):
    """Add the build options to ``parser``."""
    parser.add_argument('dataset_dir', metavar='DATASET_DIR',
                        help='one BOP dataset folder (models/, SPLIT/{scene:06d}/...)')
    parser.add_argument('--split', required=True, help='split folder, e.g. test, train_real')
    parser.add_argument('--out', required=True, metavar='OUT_DIR', help='output folder')
    parser.add_argument('--objects', default=None,
                        help=f'object name table: {"|".join(TABLE_KEYS)} or a names.json '
                             'file (default: inferred from the dataset folder name)')
    parser.add_argument('--tasks', type=_tasks, default=TASKS,
                        help=f'comma-separated tasks (default: all: {",".join(TASKS)})')
    parser.add_argument('--coords', choices=COORD_FORMATS, default='pixel',
                        help='coordinates in the answer text (targets stay in pixels); '
                             'default pixel')
    parser.add_argument('--workers', type=_positive, default=os.cpu_count() or 1,
                        help='worker processes (default: the number of cores)')
    parser.add_argument('--seed', type=int, default=0, help='random seed (default 0)')
    parser.add_argument('--limit-images', type=_positive, default=None,
                        help='only the first N images of the split')
    parser.add_argument('--images-per-shard', type=_positive, default=50,
                        help='images per output shard (default 50)')
    parser.add_argument('--max-per-task', type=_positive, default=4,
                        help='most QAs per task and image (default 4)')
    parser.add_argument('--min-visib', type=float, default=0.15,
                        help='least visible fraction of an object to ask about it '
                             '(default 0.15)')
    parser.add_argument('--margin', type=float, default=0.03,
                        help='ambiguity margin of relations and position words, metres '
                             '(default 0.03)')
    parser.add_argument('--copy-images', action='store_true',
                        help='copy images instead of hard-linking them')
    parser.add_argument('--skip-bad-images', action='store_true',
                        help='log and skip images with missing/corrupt files instead of '
                             'stopping')
    parser.add_argument('--ray', metavar='ADDRESS', default=None,
                        help='run the images on a Ray cluster ("local" starts one here; '
                             'needs the optional ray package)')
    parser.add_argument('--no-progress', action='store_true', help='no progress bar')


def run(args):
    """Run the build; return 0 on success, 1 on a stopped build, 2 on bad input."""
    from bopask_gen.generator.build import build, BuildConfig, BuildError
    config = BuildConfig(
        dataset_dir=args.dataset_dir, split=args.split, out_dir=args.out,
        objects=args.objects, tasks=tuple(args.tasks), coords=args.coords, seed=args.seed,
        limit_images=args.limit_images, images_per_shard=args.images_per_shard,
        max_per_task=args.max_per_task, min_visib=args.min_visib, margin=args.margin,
        link_images=not args.copy_images,
    )
    try:
        summary = build(config, workers=args.workers, ray_address=args.ray,
                        skip_bad_images=args.skip_bad_images, progress=not args.no_progress)
    except (BopFormatError, NameTableError, ManifestMismatchError, ValueError) as exc:
        LOG.error('%s', exc)
        return 2
    except BuildError as exc:
        LOG.error('%s', exc)
        return 1
    counts = ', '.join(f'{k} {v}' for k, v in summary['counts'].items())
    print(f'{summary["qas"]} QAs ({counts}) from {summary["images"]} images in '
          f'{summary["seconds"]:.1f} s ({summary["images_per_s"]} images/s this run) '
          f'-> {args.out}')
    return 0
