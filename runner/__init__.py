"""Deploys releases to run containers: one interface, a Docker backend (the
embedded default), the run-container entrypoint and the hot-upgrade script."""
