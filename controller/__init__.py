"""The controller: users, keys, apps, permissions, encrypted config, slugs,
releases, formation, domains and builds behind one service layer and the REST
API; it owns deploys (a release becomes a plain spec the runner runs)."""
