"""Running the course with nbgrader, one module per job:

- :mod:`~genlab.course.paths`    where a course lives (``Course``, ``course_root``)
- :mod:`~genlab.course.api`      nbgrader configured for genlab: the grading kernel, ``nbgrader_api``
- :mod:`~genlab.course.plugins`  nbgrader preprocessors that fix its 0.9 pitfalls
- :mod:`~genlab.course.build`    ``genlab build`` / ``release`` / ``validate``
- :mod:`~genlab.course.check`    ``genlab check``: a student's self-check
- :mod:`~genlab.course.grade`    ``genlab grade``: autograde, feedback, CSV
- :mod:`~genlab.course.examples` submissions made from a release (examples, tests)

The labs themselves are listed once, in :mod:`genlab.labs`.
"""
