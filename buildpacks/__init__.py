"""The bundled buildpacks (`<name>/bin/{detect,compile,release}` and the
`env.sh` their compile scripts source): shell scripts, not Python. A package
only so that they are installed with Shipway, editable or not."""
