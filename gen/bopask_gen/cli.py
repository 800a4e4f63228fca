"""The ``bopask-gen`` command: the offline half of bopask."""

import sys

from bopask_gen.cli_common import run_cli

COMMANDS = (
    ('build', 'bopask_gen.generator.build_command', 'BOP dataset -> BOP-ASK QA dataset'),
    ('viz', 'bopask_gen.generator.viz', 'draw generated answers over their images'),
    ('synth', 'bopask_gen.sim.synth', 'write synthetic MuJoCo scenes as a BOP dataset'),
    ('grasp-check', 'bopask_gen.sim.grasp_check', 'execute generated grasps in physics'),
    ('finetune', 'bopask_gen.learn.finetune', 'fine-tune a VLM on a BOP-ASK dataset'),
    ('predict', 'bopask_gen.learn.predict', 'run a VLM over a BOP-ASK dataset'),
    ('eval', 'bopask_gen.evaluation.evaluate', 'score predictions with the BOP-ASK metrics'),
)


def main(argv=None):
    """Entry point of ``bopask-gen``."""
    return run_cli('bopask-gen', __doc__, COMMANDS, argv)


def _subcommand_main(name):
    def entry(argv=None):
        return main([name] + list(sys.argv[1:] if argv is None else argv))
    entry.__doc__ = f'Entry point of ``ros2 run bopask_gen {name}``.'
    return entry


# One function per subcommand, for the ROS-style executables in lib/bopask_gen.
build_main = _subcommand_main('build')
viz_main = _subcommand_main('viz')
synth_main = _subcommand_main('synth')
grasp_check_main = _subcommand_main('grasp-check')
finetune_main = _subcommand_main('finetune')
predict_main = _subcommand_main('predict')
eval_main = _subcommand_main('eval')


if __name__ == '__main__':
    sys.exit(main())
