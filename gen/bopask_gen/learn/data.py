"""BOP-ASK records -> chat messages -> model batches (training with answer-only labels).

A record's ``conversations`` (LLaVA/ShareGPT style: ``human`` then ``gpt``; the human text
starts with ``<image>``) become chat messages in the processor's own format: the image
placeholder becomes an image part, so the model's chat template places its vision tokens.
Training batches mask every token but the answer (and the end-of-turn token after it) with
-100, so the loss is on the answer only.
"""

from pathlib import Path

from bopask_gen.evaluation.evaluate import EvalInputError, load_records

IGNORE_INDEX = -100
IMAGE_TAG = '<image>'


def select_records(data_dir, tasks=None, limit=None):
    """The dataset's records, optionally only some tasks and the first ``limit``."""
    records = load_records(data_dir)
    if tasks:
        records = [r for r in records if r['task'] in tasks]
    if limit is not None:
        records = records[:limit]
    if not records:
        raise EvalInputError(f'{data_dir}: no QA records selected (tasks={tasks}, '
                             f'limit={limit})')
    return records


def question_and_answer(record):
    """(question text without the image tag, answer text) of a record."""
    conv = record.get('conversations')
    if not isinstance(conv, list) or len(conv) < 2:
        raise EvalInputError(f'QA {record.get("id")!r}: "conversations" needs a human and a '
                             'gpt turn')
    question = str(conv[0].get('value', ''))
    answer = str(conv[1].get('value', ''))
    question = question.replace(IMAGE_TAG, '', 1).strip()
    return question, answer


def prompt_messages(question):
    """The user turn of a question about one image, in the processor chat format."""
    return [{'role': 'user', 'content': [{'type': 'image'}, {'type': 'text', 'text': question}]}]


def chat_messages(question, answer):
    """User turn + assistant answer."""
    return prompt_messages(question) + [
        {'role': 'assistant', 'content': [{'type': 'text', 'text': answer}]}]


def open_image(data_dir, record):
    """The record's image as an RGB PIL image (path relative to the dataset folder)."""
    from PIL import Image
    path = Path(data_dir) / record['image']
    try:
        with Image.open(path) as img:
            return img.convert('RGB')
    except OSError as exc:
        raise EvalInputError(f'{path}: cannot read the image of QA {record["id"]!r} '
                             f'({exc})') from exc


class RecordDataset:
    """A map-style dataset of records (the collator does the processing)."""

    def __init__(self, records):
        self.records = list(records)

    def __len__(self):
        return len(self.records)

    def __getitem__(self, i):
        return self.records[i]


class AnswerOnlyCollator:
    """Turn a list of records into a padded batch with labels on the answer tokens only."""

    def __init__(self, processor, data_dir):
        self.processor = processor
        self.data_dir = Path(data_dir)
        self.tokenizer = processor.tokenizer

    def __call__(self, records):
        """Collate records into model inputs plus ``labels``."""
        import torch
        fulls, prompts, images = [], [], []
        for rec in records:
            question, answer = question_and_answer(rec)
            prompt = self.processor.apply_chat_template(
                prompt_messages(question), tokenize=False, add_generation_prompt=True)
            full = self.processor.apply_chat_template(chat_messages(question, answer),
                                                      tokenize=False)
            if not full.startswith(prompt):
                raise ValueError('the chat template does not extend the generation prompt '
                                 'with the answer; cannot mask the prompt')
            fulls.append(full)
            prompts.append(prompt)
            images.append(open_image(self.data_dir, rec))
        self.tokenizer.padding_side = 'right'
        batch = self.processor(text=fulls, images=images, padding=True, return_tensors='pt')
        labels = torch.full_like(batch['input_ids'], IGNORE_INDEX)
        for i, (full, prompt) in enumerate(zip(fulls, prompts)):
            # The answer is the text after the prompt; it holds no image tokens, so its token
            # ids are the tail of the row (byte-level BPE does not merge across the newline
            # that ends the prompt; checked below).
            suffix = self.tokenizer(full[len(prompt):], add_special_tokens=False)['input_ids']
            length = int(batch['attention_mask'][i].sum())
            start = length - len(suffix)
            if batch['input_ids'][i, start:length].tolist() != suffix:
                raise ValueError(f'answer tokens of QA {records[i]["id"]!r} not found at the '
                                 'end of its tokenized chat; cannot mask the prompt')
            labels[i, start:length] = batch['input_ids'][i, start:length]
        batch['labels'] = labels
        return batch
