"""BOP-ASK dataset generator: scene geometry, per-task annotators and the build pipeline.

Geometric annotators (scene, cuboid, grasps, rearrangement, trajectory, relations) work in
the camera optical frame in metres unless a name says ``_world``; the pipeline (names,
questions, build, shards, viz) turns their output into question/answer samples.
"""
