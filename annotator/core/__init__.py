"""Qt-free core: project model, COCO I/O, masks, prompts, undo commands."""
