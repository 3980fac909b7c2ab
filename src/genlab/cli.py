"""The ``genlab`` command line.

Students:     genlab check NOTEBOOK          run a lab's visible tests and report per exercise
Instructors:  genlab grade [LAB ...]         autograde, feedback, grades CSV and a summary table
              genlab release                 regenerate labs/ from solutions/
Maintainers:  genlab build                   notebooks/*.py -> solutions/*/*.ipynb
              genlab validate                solutions full marks, stubs zero, labs in sync
Everyone:     genlab doctor                  versions, device, data sources, fast mode
              genlab bench                   training throughput: genlab loop vs a plain DataLoader
"""
from __future__ import annotations

import argparse
import sys


def _doctor(args) -> int:
    from . import doctor
    return doctor.main(args)


def _bench(args) -> int:
    from . import bench
    return bench.main(args)


def _grading(verb):
    def run(args) -> int:
        from . import grading
        return getattr(grading, f"cmd_{verb}")(args)
    return run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="genlab", description="Deep generative models labs: checks, grading and tools.",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("doctor", help="report versions, device, CUDA, data sources and fast mode")
    p.set_defaults(func=_doctor)

    p = sub.add_parser("bench", help="training throughput: genlab's loop vs the pytorch/examples pipeline")
    try:
        from . import bench
        bench.add_arguments(p)
    except ImportError:
        pass
    p.set_defaults(func=_bench)

    try:
        from . import grading
    except ImportError:  # grading verbs need nbgrader; the rest of the CLI does not
        grading = None
    if grading is not None:
        grading.add_subcommands(sub, _grading)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
