r"""``bopask-gen finetune``: supervised fine-tuning of a local VLM on a BOP-ASK dataset.

transformers ``Trainer`` with the model's own chat template (through its processor), the
loss on the answer tokens only (:class:`bopask_gen.learn.data.AnswerOnlyCollator`),
checkpoints every ``--save-steps`` in ``RUN_DIR/checkpoint-N`` (optimizer and scheduler
included; ``--resume`` continues from the last one), the loss logged to the console and to
``RUN_DIR/train_log.jsonl``. Nothing is downloaded: ``--model`` is a local folder.

Default recipe (tuned for Qwen2.5-VL-3B-Instruct; the paper fine-tunes that model):
full fine-tuning of the language model and the vision-language merger with the vision
encoder frozen, lr 1e-5, or with ``--lora r,alpha`` (e.g. ``--lora 64,128``) LoRA adapters on
the language model's attention and MLP projections only (regex
``.*language_model.*\.(q|k|v|o|gate|up|down)_proj``; the Qwen vision MLP reuses those
names), lr 2e-4; 1 epoch, batch 4 x grad-accum 4 per device, cosine schedule with 3% warm-up,
bf16 on a GPU (float32 on the CPU), image budget of the model's processor (``--max-pixels
307200`` keeps 640x480 frames at full size). ``--gradient-checkpointing`` for memory.

Output: ``RUN_DIR`` holds the final model (full weights, or the LoRA adapter whose
``base_model_name_or_path`` is the absolute base folder) and its processor; ``--merge``
also writes a merged copy of a LoRA run to ``RUN_DIR/merged``. Both load with
:func:`bopask_gen.learn.model_loading.load_for_inference` and ``bopask-gen predict``.

Multi-GPU (data parallel; one process per GPU, the Trainer reads the launcher's env)::

    torchrun --nproc_per_node 8 -m bopask_gen.cli finetune --data OUT --model QWEN --output RUN
    accelerate launch --num_processes 8 -m bopask_gen.cli finetune --data OUT ...

``--batch`` and ``--grad-accum`` are per device (global batch = batch x accum x GPUs).
"""

import json
import logging
from pathlib import Path
import re
import sys

LOG = logging.getLogger(__name__)
LORA_TARGET_REGEX = (r'.*language_model.*\.'
                     r'(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)')
FROZEN_VISION = re.compile(r'(^|\.)(visual|vision_tower|vision_model)\.')
DEFAULT_LR_FULL = 1e-5
DEFAULT_LR_LORA = 2e-4


class FinetuneError(ValueError):
    """A fine-tuning request that cannot run (the message says why)."""


def parse_lora(text):
    """'r,alpha' -> (r, alpha) ints; None stays None."""
    if text is None:
        return None
    try:
        r, alpha = (int(x) for x in str(text).split(','))
    except ValueError as exc:
        raise FinetuneError(f'--lora takes "r,alpha", e.g. 64,128; got {text!r}') from exc
    if r <= 0 or alpha <= 0:
        raise FinetuneError(f'--lora r and alpha must be positive, got {text!r}')
    return r, alpha


def add_arguments(parser):
    """Arguments of ``bopask-gen finetune``."""
    from bopask_gen.cli_common import add_qa_data_arguments
    add_qa_data_arguments(parser, __doc__)  # the recipe/definitions, shown by --help
    parser.add_argument('--model', required=True, type=Path,
                        help='local base model folder (e.g. Qwen2.5-VL-3B-Instruct)')
    parser.add_argument('--output', required=True, type=Path,
                        help='run folder: checkpoints, logs and the final model')
    parser.add_argument('--lora', default=None, metavar='R,ALPHA',
                        help='train LoRA adapters of rank R, scale ALPHA (default: full '
                             'fine-tune of the language model)')
    parser.add_argument('--epochs', type=float, default=1.0, help='epochs (%(default)s)')
    parser.add_argument('--lr', type=float, default=None,
                        help=f'learning rate (default {DEFAULT_LR_FULL} full, '
                             f'{DEFAULT_LR_LORA} LoRA)')
    parser.add_argument('--batch', type=int, default=4, help='per-device batch (%(default)s)')
    parser.add_argument('--grad-accum', type=int, default=4,
                        help='gradient accumulation steps (%(default)s)')
    parser.add_argument('--max-steps', type=int, default=-1,
                        help='stop after N optimizer steps (overrides --epochs)')
    parser.add_argument('--save-steps', type=int, default=500,
                        help='checkpoint every N steps (%(default)s)')
    parser.add_argument('--logging-steps', type=int, default=10,
                        help='log the loss every N steps (%(default)s)')
    parser.add_argument('--resume', action='store_true',
                        help='continue from the last checkpoint in --output')
    parser.add_argument('--merge', action='store_true',
                        help='LoRA: also save the merged model to OUTPUT/merged')
    parser.add_argument('--tasks', default=None, help='comma-separated tasks (default: all)')
    parser.add_argument('--limit', type=int, default=None, help='only the first N QAs')
    parser.add_argument('--max-pixels', type=int, default=None,
                        help="image pixel budget (default: the model processor's)")
    parser.add_argument('--train-vision', action='store_true',
                        help='also train the vision encoder (frozen by default)')
    parser.add_argument('--gradient-checkpointing', action='store_true',
                        help='trade compute for memory (recommended for 3B+ on one GPU)')
    parser.add_argument('--seed', type=int, default=0, help='random seed (%(default)s)')
    parser.add_argument('--trust-remote-code', action='store_true',
                        help="allow the model folder's own Python code (off by default)")


def freeze_vision(model):
    """Freeze the vision encoder's parameters (not the vision-language merger/projector)."""
    frozen = 0
    for name, param in model.named_parameters():
        if FROZEN_VISION.search(name) and 'merger' not in name:
            param.requires_grad_(False)
            frozen += param.numel()
    return frozen


def add_lora(model, r, alpha):
    """Wrap the language model's projections with LoRA adapters (peft)."""
    from peft import get_peft_model, LoraConfig
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=0.05,
                        target_modules=LORA_TARGET_REGEX, task_type='CAUSAL_LM')
    return get_peft_model(model, config)


def save_processor(processor, out_dir):
    """Save the processor; an image-only fallback processor is saved under its stock name."""
    processor.save_pretrained(out_dir)
    cfg_path = Path(out_dir) / 'processor_config.json'
    if type(processor).__name__ == 'ImageOnlyQwenVLProcessor' and cfg_path.is_file():
        cfg = json.loads(cfg_path.read_text())
        cfg['processor_class'] = type(processor).__mro__[1].__name__
        cfg_path.write_text(json.dumps(cfg, indent=2))


def _log_callback(run_dir):
    from transformers import TrainerCallback

    class JsonlLog(TrainerCallback):
        """Append every Trainer log (loss, lr, grad norm) to RUN_DIR/train_log.jsonl."""

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not state.is_world_process_zero or not logs:
                return
            entry = {'step': state.global_step, 'epoch': state.epoch, **logs}
            with open(Path(run_dir) / 'train_log.jsonl', 'a', encoding='utf-8') as f:
                f.write(json.dumps(entry) + '\n')
            if 'loss' in logs:
                LOG.info('step %d/%d loss %.4f', state.global_step, state.max_steps,
                         logs['loss'])

    return JsonlLog()


def finetune(data_dir, model_dir, run_dir, lora=None, epochs=1.0, lr=None, batch=4,
             grad_accum=4, max_steps=-1, save_steps=500, logging_steps=10, resume=False,
             merge=False, tasks=None, limit=None, max_pixels=None, train_vision=False,
             gradient_checkpointing=False, seed=0, trust_remote_code=False):
    """Fine-tune ``model_dir`` on ``data_dir`` into ``run_dir``; return the train metrics."""
    import torch
    from transformers import Trainer, TrainingArguments
    from transformers.trainer_utils import get_last_checkpoint

    from bopask_gen.learn.data import AnswerOnlyCollator, RecordDataset, select_records
    from bopask_gen.learn.model_loading import (
        check_model_dir,
        default_dtype,
        load_base_model,
        load_processor,
    )

    model_dir = check_model_dir(model_dir).resolve()
    if (model_dir / 'adapter_config.json').is_file():
        raise FinetuneError(f'{model_dir}: is a LoRA adapter; fine-tune from a base or merged '
                            'model folder (e.g. OUTPUT/merged of a --merge run)')
    lora = parse_lora(lora)
    for name, value in (('--batch', batch), ('--grad-accum', grad_accum),
                        ('--save-steps', save_steps), ('--logging-steps', logging_steps)):
        if value < 1:
            raise FinetuneError(f'{name} must be >= 1, got {value}')
    run_dir = Path(run_dir)
    last = get_last_checkpoint(str(run_dir)) if run_dir.is_dir() else None
    if resume and last is None:
        raise FinetuneError(f'{run_dir}: --resume given but no checkpoint-N folder there')
    if not resume and last is not None:
        raise FinetuneError(f'{run_dir}: holds checkpoints of an earlier run ({last}); pass '
                            '--resume to continue it or choose another --output')
    records = select_records(data_dir, tasks, limit)
    run_dir.mkdir(parents=True, exist_ok=True)

    cuda = torch.cuda.is_available()
    dtype = default_dtype('cuda' if cuda else 'cpu')
    processor = load_processor(model_dir, trust_remote_code=trust_remote_code,
                               max_pixels=max_pixels)
    model = load_base_model(model_dir, dtype=dtype, trust_remote_code=trust_remote_code)
    model.config.use_cache = False
    if not train_vision:
        LOG.info('vision encoder frozen (%d parameters)', freeze_vision(model))
    if lora is not None:
        model = add_lora(model, *lora)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    LOG.info('%d QAs; training %d of %d parameters (%s)', len(records), trainable, total,
             f'LoRA r={lora[0]} alpha={lora[1]}' if lora else 'full fine-tune')
    if lr is None:
        lr = DEFAULT_LR_LORA if lora else DEFAULT_LR_FULL
    meta = {'data': str(Path(data_dir).resolve()), 'base_model': str(model_dir),
            'lora': lora, 'lr': lr, 'epochs': epochs, 'batch': batch, 'grad_accum': grad_accum,
            'max_steps': max_steps, 'n_qas': len(records), 'tasks': tasks, 'seed': seed,
            'max_pixels': max_pixels, 'train_vision': train_vision}
    (run_dir / 'bopask_finetune.json').write_text(json.dumps(meta, indent=2) + '\n')

    args = TrainingArguments(
        output_dir=str(run_dir), per_device_train_batch_size=batch,
        gradient_accumulation_steps=grad_accum, num_train_epochs=epochs, max_steps=max_steps,
        learning_rate=lr, lr_scheduler_type='cosine', warmup_steps=0.03, weight_decay=0.0,
        logging_steps=logging_steps, save_steps=save_steps, save_total_limit=2,
        remove_unused_columns=False, report_to='none', use_cpu=not cuda,
        bf16=dtype == torch.bfloat16, seed=seed, activation_checkpointing=gradient_checkpointing,
        ddp_find_unused_parameters=False, dataloader_num_workers=2 if cuda else 0,
    )
    trainer = Trainer(model=model, args=args, train_dataset=RecordDataset(records),
                      data_collator=AnswerOnlyCollator(processor, data_dir),
                      processing_class=processor, callbacks=[_log_callback(run_dir)])
    result = trainer.train(resume_from_checkpoint=last if resume else None)
    trainer.save_model(str(run_dir))
    if trainer.is_world_process_zero():
        save_processor(processor, run_dir)
        if merge and lora is not None:
            merged = trainer.model.merge_and_unload()
            merged.save_pretrained(run_dir / 'merged')
            save_processor(processor, run_dir / 'merged')
        LOG.info('saved to %s', run_dir)
    return result.metrics


def run(args):
    """Run ``bopask-gen finetune``; exit 2 on unusable input."""
    from bopask_gen.evaluation.evaluate import EvalInputError
    from bopask_gen.learn.model_loading import ModelLoadError
    tasks = [t.strip() for t in args.tasks.split(',')] if args.tasks else None
    try:
        metrics = finetune(
            args.data, args.model, args.output, lora=args.lora, epochs=args.epochs, lr=args.lr,
            batch=args.batch, grad_accum=args.grad_accum, max_steps=args.max_steps,
            save_steps=args.save_steps, logging_steps=args.logging_steps, resume=args.resume,
            merge=args.merge, tasks=tasks, limit=args.limit, max_pixels=args.max_pixels,
            train_vision=args.train_vision, gradient_checkpointing=args.gradient_checkpointing,
            seed=args.seed, trust_remote_code=args.trust_remote_code)
    except (FinetuneError, EvalInputError, ModelLoadError) as exc:
        print(f'bopask-gen finetune: {exc}', file=sys.stderr)
        return 2
    print(json.dumps(metrics))
    return 0
