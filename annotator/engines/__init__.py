"""Segmentation engines (SAM, classic GrabCut) and the embedding cache; torch is imported lazily."""
