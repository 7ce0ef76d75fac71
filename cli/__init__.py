"""The `shipway` command: Gigalixir's verbs over the REST API, plus `server`
and `stack:build` which run the platform itself."""
