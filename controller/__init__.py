"""The controller: users, keys, apps, permissions, encrypted config, slugs,
releases, formation, domains and builds, behind one service layer and the REST API."""
