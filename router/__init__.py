"""The router's control plane: renders nginx config for apps, domains and
replicas, and reloads the managed nginx gracefully."""
