# The instructor profile (make instructor, genlab lab --instructor): JupyterLab with all of
# nbgrader's tools (formgrader, Create Assignment, the nbgrader menu) on this course.
import os

load_subconfig(os.path.join(os.path.dirname(__file__), "..", "..", "grading", "nbgrader_config.py"))  # noqa: F821
