"""Collects build and container output per app (roadmap milestone 2)."""
