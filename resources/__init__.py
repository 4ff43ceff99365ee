"""Data files shipped with Annotator: sample images, icons, default categories."""
