"""CPU smoke test of the learning chain: tiny VLM -> finetune -> save -> reload -> predict -> eval.

The tiny Qwen2.5-VL is random and trains a few steps only: this proves the plumbing (chat
template, answer-only labels, LoRA, checkpoints/resume, adapter and merged reload, batched
generation, scoring), not accuracy. No downloads.
"""

import json
from pathlib import Path

import numpy as np
import pytest

from bopask_gen.cli import main


@pytest.fixture(scope='module')
def data_dir(ycbv_subset_dir, tmp_path_factory):
    """A small dataset made by the generator itself (``bopask-gen build``) on real frames."""
    out = tmp_path_factory.mktemp('qa_small') / 'built'
    assert main(['build', str(ycbv_subset_dir), '--split', 'train_real', '--out', str(out),
                 '--tasks', 'pose,spatial,depth', '--limit-images', '2', '--workers', '1']) == 0
    return out


def test_generated_answers_score_perfectly(data_dir, tmp_path):
    from bopask_gen.evaluation.evaluate import evaluate, load_records
    records = load_records(data_dir)
    preds = tmp_path / 'p.jsonl'
    preds.write_text(''.join(json.dumps({'id': r['id'], 'text': r['conversations'][1]['value']})
                             + '\n' for r in records))
    report, _ = evaluate(data_dir, preds, progress=False)
    assert report['pose_iou']['n'] > 0 and report['pose_iou']['value'] > 0.98  # integer pixels
    assert report['pose_iou_3d']['n'] == report['pose_iou']['n']
    assert report['pose_iou_3d']['value'] > 0.97
    assert report['spatial_acc']['value'] == 1.0 and report['depth_acc']['value'] == 1.0


@pytest.fixture(scope='module')
def tiny_model(data_dir, tmp_path_factory):
    from bopask_gen.learn.data import question_and_answer, select_records
    from bopask_gen.learn.tiny_model import build_tiny_qwen_vl
    texts = [' '.join(question_and_answer(r)) for r in select_records(data_dir)]
    return build_tiny_qwen_vl(tmp_path_factory.mktemp('tiny') / 'model', texts=texts)


def _ids(path):
    return [json.loads(line)['id'] for line in Path(path).read_text().splitlines()]


def test_answer_only_labels(tiny_model, data_dir):
    from bopask_gen.learn.data import AnswerOnlyCollator, question_and_answer, select_records
    from bopask_gen.learn.model_loading import load_processor
    processor = load_processor(tiny_model)
    records = select_records(data_dir, limit=3)
    batch = AnswerOnlyCollator(processor, data_dir)(records)
    assert batch['pixel_values'].shape[0] > 0 and batch['labels'].shape == \
        batch['input_ids'].shape
    for i, rec in enumerate(records):
        labels = batch['labels'][i]
        text = processor.tokenizer.decode(labels[labels != -100])
        assert text == question_and_answer(rec)[1] + '<|im_end|>\n'


def test_whole_chain_lora_resume_reload_predict_eval(tiny_model, data_dir, tmp_path):
    run = tmp_path / 'run'
    common = ['finetune', '--data', str(data_dir), '--model', str(tiny_model), '--output',
              str(run), '--lora', '8,16', '--batch', '4', '--grad-accum', '1',
              '--save-steps', '2', '--logging-steps', '1', '--lr', '1e-3']
    assert main(common + ['--max-steps', '2']) == 0
    assert (run / 'checkpoint-2').is_dir() and (run / 'adapter_config.json').is_file()
    base = json.loads((run / 'adapter_config.json').read_text())['base_model_name_or_path']
    assert Path(base) == Path(tiny_model).resolve()
    # Same output folder without --resume: refused; with it: continues at step 2.
    assert main(common + ['--max-steps', '4']) == 2
    assert main(common + ['--max-steps', '4', '--resume', '--merge']) == 0
    log = [json.loads(line) for line in (run / 'train_log.jsonl').read_text().splitlines()]
    steps = [e['step'] for e in log if 'loss' in e]
    assert steps == [1, 2, 3, 4] and all(e['loss'] > 0 for e in log if 'loss' in e)
    assert (run / 'merged' / 'config.json').is_file()

    preds = {}
    for name, model_dir in (('adapter', run), ('merged', run / 'merged')):
        out = tmp_path / f'{name}.jsonl'
        assert main(['predict', '--data', str(data_dir), '--model', str(model_dir), '--out',
                     str(out), '--limit', '6', '--batch', '4', '--max-new-tokens', '8']) == 0
        preds[name] = out
    assert _ids(preds['adapter']) == _ids(preds['merged'])
    adapter_texts = [json.loads(x)['text'] for x in preds['adapter'].read_text().splitlines()]
    merged_texts = [json.loads(x)['text'] for x in preds['merged'].read_text().splitlines()]
    assert adapter_texts == merged_texts  # merging reproduces the adapter's greedy output
    # --resume keeps the 6 answers and adds the next 2.
    assert main(['predict', '--data', str(data_dir), '--model', str(run / 'merged'), '--out',
                 str(preds['merged']), '--limit', '8', '--max-new-tokens', '8',
                 '--resume']) == 0
    ids = _ids(preds['merged'])
    assert len(ids) == len(set(ids)) == 8 and ids[:6] == _ids(preds['adapter'])
    assert main(['eval', '--data', str(data_dir), '--pred', str(preds['adapter']), '--report',
                 str(tmp_path / 'report')]) == 0
    report = json.loads((tmp_path / 'report' / 'report.json').read_text())
    assert sum(report['counts'].values()) == 6


def test_full_finetune_output_loads_for_inference(tiny_model, data_dir, tmp_path):
    from bopask_gen.learn.data import open_image, question_and_answer, select_records
    from bopask_gen.learn.inference import generate_answers
    from bopask_gen.learn.model_loading import load_for_inference
    run = tmp_path / 'full'
    assert main(['finetune', '--data', str(data_dir), '--model', str(tiny_model), '--output',
                 str(run), '--max-steps', '1', '--batch', '2', '--grad-accum', '1']) == 0
    model, processor = load_for_inference(run)
    assert not hasattr(model, 'peft_config')
    rec = select_records(data_dir, limit=1)[0]
    image = open_image(data_dir, rec)
    question = question_and_answer(rec)[0]
    texts = generate_answers(model, processor, [image, np.asarray(image)], [question] * 2,
                             max_new_tokens=4)
    assert len(texts) == 2 and texts[0] == texts[1]  # PIL image or RGB array alike


def test_missing_models_are_clear_errors(data_dir, tmp_path, capsys):
    from bopask_gen.learn.model_loading import load_for_inference, ModelLoadError
    missing = tmp_path / 'no_model'
    assert main(['finetune', '--data', str(data_dir), '--model', str(missing), '--output',
                 str(tmp_path / 'r')]) == 2
    assert 'model folder not found' in capsys.readouterr().err
    assert main(['predict', '--data', str(data_dir), '--model', str(missing), '--out',
                 str(tmp_path / 'p.jsonl')]) == 2
    assert 'never downloaded' in capsys.readouterr().err
    adapter = tmp_path / 'adapter'
    adapter.mkdir()
    (adapter / 'adapter_config.json').write_text(json.dumps(
        {'base_model_name_or_path': 'Qwen/Qwen2.5-VL-3B-Instruct'}))
    with pytest.raises(ModelLoadError, match='not a local model folder'):
        load_for_inference(adapter)
    assert main(['finetune', '--data', str(data_dir), '--model', str(tmp_path), '--output',
                 str(tmp_path / 'r'), '--lora', '8']) == 2
    assert 'config.json' in capsys.readouterr().err
