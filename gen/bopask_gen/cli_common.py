"""A small argparse front end whose subcommands live in their own modules.

Each subcommand module defines ``add_arguments(parser)`` and ``run(args) -> int``; it is
imported only when its command runs, so ``bopask-gen eval`` never imports MuJoCo or torch.
"""

import argparse
import importlib
import logging
from pathlib import Path
import sys


def add_qa_data_arguments(parser, doc):
    """Show ``doc`` (a module's recipe and definitions) under ``--help``; add ``--data``.

    The arguments the commands that read generator output share (finetune, predict, eval).
    """
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = doc
    parser.add_argument('--data', required=True, type=Path,
                        help='generator output folder (holds data/*.jsonl)')


def build_parser(prog, description, commands):
    """Return an ArgumentParser with one subparser per (name, module, help) in ``commands``."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument('-v', '--verbose', action='store_true', help='debug logging')
    sub = parser.add_subparsers(dest='command', metavar='COMMAND', required=True)
    for name, module_name, help_text in commands:
        sub_parser = sub.add_parser(name, help=help_text, description=help_text)
        sub_parser.set_defaults(_module=module_name)
        # Adding arguments needs the module; keep `--help` of the top level cheap by
        # deferring the import until this subcommand is the one being parsed.
        sub_parser.set_defaults(_lazy=True)
    return parser


def run_cli(prog, description, commands, argv=None):
    """Parse ``argv`` and run the chosen subcommand; return its exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    names = {name: module for name, module, _ in commands}
    parser = build_parser(prog, description, commands)
    chosen = next((a for a in argv if not a.startswith('-')), None)
    if chosen in names:
        module = importlib.import_module(names[chosen])
        sub_parser = parser._subparsers._group_actions[0].choices[chosen]
        module.add_arguments(sub_parser)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format='%(levelname)s %(name)s: %(message)s',
    )
    module = importlib.import_module(args._module)
    try:
        return int(module.run(args) or 0)
    except KeyboardInterrupt:
        print(f'{prog}: interrupted', file=sys.stderr)
        return 130
