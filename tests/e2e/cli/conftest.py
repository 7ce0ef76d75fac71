"""The CLI fixtures of tests/cli/conftest.py, here on the Docker server of
tests/e2e/conftest.py (fixtures resolve where the test asks for them)."""
from tests.cli.conftest import app, cli, logged_in  # noqa: F401 (fixtures)
