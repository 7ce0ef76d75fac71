"""The `shipway` command: Gigalixir's verbs over the REST API, plus `server`
(the composition root's own command) and `stack:build`."""
