"""Batch commands on a Ray cluster (`--ray`; the `annotator[cluster]` extra installs ray[data]).

Nothing here is imported unless a command is given `--ray`: `import annotator` and the other
commands never load ray. See `ray_batch` and docs/decisions/0010-cluster-and-embedding-store.md.
"""
