"""bopask_ros: language commands to robot actions through a vision-language model."""

__version__ = '0.1.0'
