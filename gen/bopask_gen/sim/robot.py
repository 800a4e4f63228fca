"""The Franka Panda arm + hand as a MuJoCo spec, from the dm-robotics-panda MJCF assets.

The hand is attached to the flange (``panda_link8``) rotated -45 degrees about z, as on the
real robot. Actuators are added here and addressed by name (attached actuators come first in
``ctrl``, so indices are never assumed):

- ``ARM_ACTUATORS``: position servos on the 7 arm joints (radians), gains of the usual
  MuJoCo Panda model, torque limits of the real arm.
- ``GRIPPER_ACTUATOR``: a position servo on the finger tendon whose control is the opening
  between the fingers in metres (0..0.08), force limited to about 70 N per finger (the
  Franka hand's continuous force).

The TCP site ``TCP_SITE`` is the ``core.gripper`` frame: origin between the fingertips
(``FLANGE_TO_TCP`` from the flange), z = approach, y = finger line.
"""

import numpy as np

from bopask_gen.core.gripper import FLANGE_TO_TCP, MAX_OPENING
from bopask_gen.sim import backend
from bopask_gen.sim.assets import panda_asset_dir

backend.ensure_gl_backend()
import mujoco  # noqa: E402  (MUJOCO_GL must be set first)

ARM_JOINTS = tuple(f'panda_joint{i}' for i in range(1, 8))
ARM_ACTUATORS = tuple(f'panda_act{i}' for i in range(1, 8))
FINGER_JOINTS = ('hand_panda_finger_joint1', 'hand_panda_finger_joint2')
GRIPPER_ACTUATOR = 'hand_panda_hand_actuator'
TCP_SITE = 'hand_TCP'
HAND_BODY = 'hand_panda_hand'
BASE_BODY = 'panda_link0'
FINGER_GEOMS = ('hand_panda_leftfinger_collision', 'hand_panda_rightfinger_collision')

HOME_Q = np.array([0.0, -0.785, 0.0, -2.356, 0.0, 1.571, 0.785])
'''The Panda 'ready' pose: hand above the table in front of the base, fingers down.'''

ARM_KP = (4500.0, 4500.0, 3500.0, 3500.0, 2000.0, 2000.0, 2000.0)
ARM_KV = (450.0, 450.0, 350.0, 350.0, 200.0, 200.0, 200.0)
ARM_TORQUE = (87.0, 87.0, 87.0, 87.0, 12.0, 12.0, 12.0)
GRIPPER_KP = 20000.0
'''Tendon stiffness, N/m; high so a closed gripper squeezes at the force limit.'''
GRIPPER_FORCE = 140.0
'''Tendon force limit, N; each finger gets half (70 N, Franka's continuous grasp force).'''
HAND_ROTATION_WXYZ = (0.92387953, 0.0, 0.0, -0.38268343)
'''-45 degrees about the flange z axis, the real Panda's hand mounting.'''


def panda_spec(base_pos=(0.0, 0.0, 0.0), base_yaw=0.0):
    """Return a new spec holding the Panda arm + hand with actuators.

    World elements can be added to the spec. The arm's base (``panda_link0``) is placed at
    ``base_pos`` with ``base_yaw`` radians about the world z axis.
    """
    assets = panda_asset_dir()
    # The arm's file is the root spec (no attach, so its names stay unprefixed).
    spec = mujoco.MjSpec.from_file(str(assets / 'panda.xml'))
    hand = mujoco.MjSpec.from_file(str(assets / 'panda_hand.xml'))
    for s in (spec, hand):
        s.meshdir = str(assets)
        s.texturedir = str(assets)
    half = base_yaw / 2.0
    base = spec.body(BASE_BODY)
    base.pos = list(base_pos)
    base.quat = [np.cos(half), 0.0, 0.0, np.sin(half)]
    flange = spec.body('panda_link8')
    hand_frame = flange.add_frame(quat=list(HAND_ROTATION_WXYZ))
    hand_frame.attach_body(hand.body('panda_hand'), 'hand_', '')
    tcp = spec.site(TCP_SITE)
    tcp.pos = [0.0, 0.0, FLANGE_TO_TCP]
    for name in ARM_JOINTS:
        spec.joint(name).armature = 0.1
    for i, name in enumerate(ARM_JOINTS):
        act = spec.add_actuator(name=ARM_ACTUATORS[i], target=name,
                                trntype=mujoco.mjtTrn.mjTRN_JOINT)
        lo, hi = spec.joint(name).range
        act.set_to_position(kp=ARM_KP[i], kv=ARM_KV[i])
        act.ctrlrange = [lo, hi]
        act.ctrllimited = True
        act.forcerange = [-ARM_TORQUE[i], ARM_TORQUE[i]]
        act.forcelimited = True
    # Control = finger opening in metres. The tendon is the mean finger travel, i.e. half
    # the opening, so force = kp * (ctrl / 2 - tendon) - kv * tendon_velocity.
    grip = spec.actuator(GRIPPER_ACTUATOR)
    grip.gainprm[0] = GRIPPER_KP / 2.0
    grip.biasprm[0] = 0.0
    grip.biasprm[1] = -GRIPPER_KP
    grip.biasprm[2] = -200.0
    grip.ctrlrange = [0.0, MAX_OPENING]
    grip.forcerange = [-GRIPPER_FORCE, GRIPPER_FORCE]
    for name in FINGER_GEOMS:
        geom = spec.geom(name)
        geom.friction = [1.5, 0.05, 0.0001]
        geom.condim = 4
        # Stiff contacts: the default (solref 0.02) lets a 70 N squeeze sink the light
        # fingers by a centimetre into the object.
        geom.solref = [0.004, 1.0]
        geom.solimp = [0.95, 0.99, 0.001, 0.5, 2.0]
    return spec




def name_id(model, obj_type, name):
    """Id of a named MuJoCo element; KeyError naming it when the model lacks it."""
    idx = mujoco.mj_name2id(model, obj_type, name)
    if idx < 0:
        raise KeyError(f'MuJoCo model has no {obj_type.name[6:].lower()} named {name!r}')
    return idx


def arm_qpos_addresses(model):
    """Qpos indices of the 7 arm joints, in joint order."""
    return np.array([model.jnt_qposadr[name_id(model, mujoco.mjtObj.mjOBJ_JOINT, n)]
                     for n in ARM_JOINTS])
