"""The ``genlab`` command line.

Students:     genlab lab                     JupyterLab on work/ (a copy of labs/), no instructor tools
              genlab check NOTEBOOK          run a lab's visible tests and report per exercise
Instructors:  genlab lab --instructor        JupyterLab on the repository with nbgrader's tools
              genlab grade [LAB ...]         autograde, feedback, grades CSV and a summary table
              genlab release                 regenerate labs/ from solutions/
              genlab example-class --out DIR a synthetic class of N students to try grading
Maintainers:  genlab build                   notebooks/*.py -> solutions/*/*.ipynb
              genlab validate                solutions full marks, stubs zero, labs in sync
              genlab seeds LAB               rerun a lab with seeds 0-4: the spread of its figures
Everyone:     genlab doctor                  versions, device, data sources, fast mode
              genlab bench                   training throughput: genlab loop vs a plain DataLoader
"""
from __future__ import annotations

import argparse
import sys


def _doctor(args) -> int:
    from . import doctor
    return doctor.main(args)


def _lab(args) -> int:
    from . import launch
    return launch.main(args)


def _bench(args) -> int:
    from . import bench
    return bench.main(args)


# The grading verbs import nbgrader, which takes seconds: each is imported when it runs.

def _check(args) -> int:
    from .course.check import cmd_check
    return cmd_check(args)


def _grade(args) -> int:
    from .course.grade import cmd_grade
    return cmd_grade(args)


def _example_class(args) -> int:
    from .course.examples import cmd_example_class
    return cmd_example_class(args)


def _release(args) -> int:
    from .course.build import cmd_release
    return cmd_release(args)


def _validate(args) -> int:
    from .course.build import cmd_validate
    return cmd_validate(args)


def _build(args) -> int:
    from .course.build import cmd_build
    return cmd_build(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="genlab", description="Deep generative models labs: checks, grading and tools.",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("doctor", help="report versions, device, CUDA, data sources and fast mode")
    p.set_defaults(func=_doctor)

    p = sub.add_parser("lab", help="open JupyterLab: students on work/ (a copy of labs/), or "
                                   "--instructor with nbgrader's tools")
    p.add_argument("--instructor", action="store_true",
                   help="the instructor view: formgrader, Create Assignment, the nbgrader menu")
    p.add_argument("--port", type=int, default=None, help="the server's port (default: JupyterLab's)")
    p.add_argument("jupyter_args", nargs="*", metavar="-- JUPYTER_ARG",
                   help="passed on to jupyter lab, after a '--' (e.g. -- --no-browser)")
    p.set_defaults(func=_lab)

    p = sub.add_parser("bench", help="training throughput: genlab's loop vs the pytorch/examples pipeline")
    from . import bench
    bench.add_arguments(p)
    p.set_defaults(func=_bench)

    p = sub.add_parser("seeds", help="rerun a lab's solution with several seeds and print each "
                                     "run's figures (the spread of its headline result)")
    from . import seeds
    seeds.add_arguments(p)
    p.set_defaults(func=seeds.main)

    _add_grading_commands(sub)
    return parser


def _add_grading_commands(sub) -> None:
    """The grading verbs; nbgrader is imported only when one of them runs."""
    p = sub.add_parser("check", help="self-check a lab notebook: run its visible tests")
    p.add_argument("notebook", help="path to your notebook, e.g. labs/01_transposed_convolution/"
                                    "01_transposed_convolution.ipynb")
    p.add_argument("--timeout", type=int, default=120, help="seconds per cell (default 120)")
    p.set_defaults(func=_check)

    p = sub.add_parser("grade", help="autograde all submissions, feedback, CSV and a summary")
    p.add_argument("labs", nargs="*", metavar="LAB", help="lab ids (default: every lab)")
    p.add_argument("--examples", action="store_true",
                   help="grade the bundled example submissions (the default when "
                        "grading/submitted/ is empty)")
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="grade N students at a time, each notebook in its own sandbox (default 1)")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="grade on Dask distributed: 'local' (a LocalCluster of --workers "
                        "processes) or a scheduler address tcp://HOST:PORT")
    p.add_argument("--db", default=None, metavar="URL",
                   help="the gradebook's SQLAlchemy URL, e.g. postgresql://user@host/db "
                        "(default: SQLite in the course's grading folder)")
    p.add_argument("--all-cells", action="store_true",
                   help="also run the demo cells (training, plots); by default grading skips them")
    p.add_argument("--force", action="store_true",
                   help="regrade submissions already graded (default: reuse the results of "
                        "unchanged submissions from results.jsonl)")
    p.set_defaults(func=_grade)

    p = sub.add_parser("example-class", help="instructors: a synthetic class (honest, blank, "
                       "typical mistakes, partly done, broken) to try grading at scale")
    p.add_argument("labs", nargs="*", metavar="LAB", help="lab ids (default: every lab)")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="the folder to write (a course of its own: cd DIR && genlab grade)")
    p.add_argument("--students", type=int, default=20, metavar="N",
                   help="students in the class (default 20)")
    p.add_argument("--seed", type=int, default=0, help="the same seed gives the same class (default 0)")
    p.add_argument("--mix", default=None, metavar="KIND=W,...",
                   help="weights of the kinds of student (default honest=3,mistakes=3,partial=2,"
                        "blank=1,broken=1); each kind with a weight gets at least one student")
    p.add_argument("--force", action="store_true", help="replace a class generated before in DIR")
    p.add_argument("--verify", action="store_true",
                   help="after grading DIR: compare its grades.csv with the expected scores")
    p.set_defaults(func=_example_class)

    p = sub.add_parser("release", help="regenerate labs/ from solutions/ (and solutions/ from notebooks/)")
    p.add_argument("labs", nargs="*", metavar="LAB")
    p.add_argument("--no-build", action="store_true", help="do not rebuild solutions/ first")
    p.set_defaults(func=_release)

    p = sub.add_parser("validate", help="maintainers: solutions full marks, stubs zero, labs in sync")
    p.add_argument("labs", nargs="*", metavar="LAB")
    p.set_defaults(func=_validate)

    p = sub.add_parser("build", help="maintainers: compile notebooks/*.py into solutions/")
    p.set_defaults(func=_build)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
