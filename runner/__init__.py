"""Runs release specs as replicas: one interface, a Docker backend (the
embedded default) with supervision that reads the desired state through
`IDesiredState`, the run-container entrypoint and the hot-upgrade script."""
