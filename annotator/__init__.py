"""Annotator: label images with Segment Anything, save them as COCO.

Importing this package loads neither torch nor Qt: the core (project model, COCO I/O, prompt
session, engines' plumbing, CLI) stays fast to start and usable headless.
"""

__version__ = "0.1.0"

import logging as _logging

# A library is silent until the application configures logging (annotator.log.setup_logging):
# without this, Python's last-resort handler would print warnings to stderr.
_logging.getLogger("annotator").addHandler(_logging.NullHandler())
