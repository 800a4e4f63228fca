"""Geometry and data formats shared by the generator, the ROS nodes and the evaluator.

Inside bopask every length is in metres and every image array is numpy; BOP files (mm) are
converted only in :mod:`bopask_gen.core.bop`.
"""
