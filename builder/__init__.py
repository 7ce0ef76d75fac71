"""Builds a pushed commit into a slug inside an isolated Docker container from
the stack image, running Heroku-API buildpacks; also builds the stack image."""
