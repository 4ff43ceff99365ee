"""Segmentation engines (SAM, the no-model classic engine), the embedding cache and the eval
driver (`annotator eval`); torch is imported lazily."""
