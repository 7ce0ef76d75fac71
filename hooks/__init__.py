"""The pre-receive pipeline: what a push means (which refs deploy, hot or
restart, build → slug, then one controller call for release → deploy) and what
the pusher sees."""
