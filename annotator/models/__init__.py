"""Checkpoint registry, discovery and download manager."""
