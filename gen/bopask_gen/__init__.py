"""bopask_gen: BOP-ASK dataset generation, synthetic scenes, fine-tuning and evaluation."""

__version__ = '0.1.0'
