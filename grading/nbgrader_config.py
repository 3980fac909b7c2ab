# nbgrader configuration for genlab. The genlab command line (genlab release/grade/validate)
# loads this file and fills in the course paths; the plain nbgrader command works too when run
# from the repository root:  nbgrader autograde 01_transposed_convolution --config grading/nbgrader_config.py
import os

c = get_config()  # noqa: F821  (provided by traitlets when the file is loaded)

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

c.CourseDirectory.root = root
c.CourseDirectory.course_id = "genlab"  # PostgreSQL enforces the gradebook's course foreign key
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "labs"
c.CourseDirectory.submitted_directory = "grading/submitted"
c.CourseDirectory.autograded_directory = "grading/autograded"
c.CourseDirectory.feedback_directory = "grading/feedback"
c.CourseDirectory.db_url = "sqlite:///" + os.path.join(root, "grading", "gradebook.db")
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", ".DS_Store"]

# Student ids are folder names under grading/submitted.
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}

# Sanitizing a submission: genlab's replacements keep one bad notebook from aborting the batch.
c.Autograde.sanitize_preprocessors = [
    "nbgrader.preprocessors.ClearOutput",
    "genlab.course.plugins.DeduplicateIds",    # duplicated graded cells: drop the copy's metadata
    "nbgrader.preprocessors.OverwriteKernelspec",
    "genlab.course.plugins.RestoreCells",      # restore deleted/tampered test and locked cells
    "nbgrader.preprocessors.CheckCellMetadata",
]
c.Autograde.autograde_preprocessors = [
    "genlab.course.plugins.Execute",           # per-cell timeouts by grade_id; survives a dead kernel
    "nbgrader.preprocessors.IgnorePattern",
    "nbconvert.preprocessors.ClearMetadataPreprocessor",
    "nbgrader.preprocessors.LimitOutput",
    "genlab.course.plugins.Verdict",           # points = ran without error; no partial credit
    "nbgrader.preprocessors.SaveAutoGrades",
    "nbgrader.preprocessors.AssignLatePenalties",
    "nbgrader.preprocessors.CheckCellMetadata",
]
c.GenerateFeedback.exporter_class = "genlab.course.plugins.FeedbackExporter"  # no BeautifulSoup pass
c.GenerateFeedback.preprocessors = [
    "nbgrader.preprocessors.GetGrades",
    "genlab.course.plugins.HideTests",         # no hidden test code, no tracebacks into test code
    "nbconvert.preprocessors.CSSHTMLHeaderPreprocessor",
]

# Kernel: a fixed name (the student's kernelspec is ignored), resource limits set by genlab.
c.Execute.kernel_name = "genlab-grader"
c.Execute.default_timeout = 120          # seconds for a cell genlab has no entry for
c.Execute.cell_timeouts = {              # by grade_id (fnmatch patterns), never by editable tags
    "test_*": 30,
}
c.Execute.interrupt_on_timeout = True
c.KernelManager.transport_encryption = "auto"   # no "TCP without encryption" noise (genlab also uses IPC)
c.LimitOutput.max_lines = 200
c.LimitOutput.max_traceback = 60
