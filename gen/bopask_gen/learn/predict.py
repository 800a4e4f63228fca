"""``bopask-gen predict``: run a VLM over a BOP-ASK dataset, write ``{"id", "text"}`` per QA.

The model folder may be a base model, a ``bopask-gen finetune`` output (full or merged) or a
LoRA adapter folder (see :mod:`bopask_gen.learn.model_loading`). Greedy decoding. The output
is written as it goes (one JSON line per QA, flushed per batch); ``--resume`` keeps the
answers already in ``--out`` and runs only the missing QAs.
"""

import json
import logging
from pathlib import Path
import sys

from tqdm import tqdm

LOG = logging.getLogger(__name__)


def add_arguments(parser):
    """Arguments of ``bopask-gen predict``."""
    from bopask_gen.cli_common import add_qa_data_arguments
    add_qa_data_arguments(parser, __doc__)  # the recipe/definitions, shown by --help
    parser.add_argument('--model', required=True, type=Path,
                        help='local model folder: base, finetune output or LoRA adapter')
    parser.add_argument('--out', required=True, type=Path, help='predictions JSONL to write')
    parser.add_argument('--batch', type=int, default=8, help='QAs per generate call (%(default)s)')
    parser.add_argument('--max-new-tokens', type=int, default=256,
                        help='answer length limit in tokens (%(default)s)')
    parser.add_argument('--tasks', default=None,
                        help='comma-separated tasks to run (default: all)')
    parser.add_argument('--limit', type=int, default=None, help='only the first N QAs')
    parser.add_argument('--max-pixels', type=int, default=None,
                        help="image pixel budget of the processor (default: the model's)")
    parser.add_argument('--device', default=None, help='cuda, cuda:1, cpu (default: auto)')
    parser.add_argument('--resume', action='store_true',
                        help='keep answers already in --out and add the missing ones')
    parser.add_argument('--trust-remote-code', action='store_true',
                        help="allow the model folder's own Python code (off by default)")


def predict(data_dir, model_dir, out_path, batch=8, max_new_tokens=256, tasks=None,
            limit=None, max_pixels=None, device=None, resume=False, trust_remote_code=False):
    """Write predictions for the selected QAs; return the number written by this call."""
    from bopask_gen.learn.data import open_image, question_and_answer, select_records
    from bopask_gen.learn.inference import generate_answers
    from bopask_gen.learn.model_loading import load_for_inference
    if batch < 1:
        raise ValueError(f'--batch must be >= 1, got {batch}')
    records = select_records(data_dir, tasks, limit)
    out_path = Path(out_path)
    done = set()
    if resume and out_path.is_file():
        with open(out_path, encoding='utf-8') as f:
            done = {json.loads(line)['id'] for line in f if line.strip()}
    elif out_path.exists() and not resume:
        LOG.info('overwriting %s', out_path)
    todo = [r for r in records if r['id'] not in done]
    model, processor = load_for_inference(model_dir, device=device,
                                          trust_remote_code=trust_remote_code,
                                          max_pixels=max_pixels)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with open(out_path, 'a' if resume else 'w', encoding='utf-8') as f, \
            tqdm(total=len(todo), desc='predict', unit='QA') as bar:
        for i in range(0, len(todo), batch):
            chunk = todo[i:i + batch]
            questions = [question_and_answer(r)[0] for r in chunk]
            images = [open_image(data_dir, r) for r in chunk]
            texts = generate_answers(model, processor, images, questions, max_new_tokens)
            for rec, text in zip(chunk, texts):
                f.write(json.dumps({'id': rec['id'], 'text': text}) + '\n')
            f.flush()
            written += len(chunk)
            bar.update(len(chunk))
    return written


def run(args):
    """Run ``bopask-gen predict``; exit 2 on unusable input."""
    from bopask_gen.evaluation.evaluate import EvalInputError
    from bopask_gen.learn.model_loading import ModelLoadError
    tasks = [t.strip() for t in args.tasks.split(',')] if args.tasks else None
    try:
        n = predict(args.data, args.model, args.out, args.batch, args.max_new_tokens, tasks,
                    args.limit, args.max_pixels, args.device, args.resume,
                    args.trust_remote_code)
    except (EvalInputError, ModelLoadError, ValueError) as exc:
        print(f'bopask-gen predict: {exc}', file=sys.stderr)
        return 2
    print(f'{n} predictions written to {args.out}')
    return 0
