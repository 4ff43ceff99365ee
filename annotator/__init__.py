"""Annotator: label images with Segment Anything, save them as COCO.

Importing this package loads neither torch nor Qt: the core (project model, COCO I/O, prompt
session, engines' plumbing, CLI) stays fast to start and usable headless.
"""

__version__ = "0.1.0"
