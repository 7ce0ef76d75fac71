"""The pre-receive pipeline: what a push means (which refs deploy, hot or
restart, build → slug → release → deploy) and what the pusher sees."""
