"""Fine-tuning and running vision-language models on BOP-ASK data (transformers + peft).

Modules: model_loading (load a base / merged / LoRA-adapter folder for inference; used by
the ROS vlm node too), data (records -> chat messages -> training batches), inference
(batched answers), finetune and predict (the CLI commands), tiny_model (a tiny random
Qwen2.5-VL with a locally trained tokenizer, for tests and dry runs). Nothing is ever
downloaded: every model is a local folder.
"""
