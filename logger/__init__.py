"""The app's logs: a bounded history per app with live followers
(`store.py`), fed by the Docker runner's containers (`docker_collector.py`),
the pipeline's build lines and the deployer's lines; read through
`GET /api/apps/{app}/logs` and `shipway logs [-n N] [-f]`."""
