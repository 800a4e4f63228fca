"""MuJoCo simulation: a tabletop with a Franka Panda, YCB objects and an RGB-D camera.

``world.World`` is the simulated robot + camera (also the default robot of the ROS graph);
``synth`` writes synthetic BOP datasets from it; ``grasp_check`` executes generated grasps.
Import ``bopask_gen.sim.backend`` (done by ``world``) before anything imports mujoco, so the
headless OpenGL backend can be chosen.
"""
