"""The shared kernel every part may import: settings, user-facing errors,
value objects (release spec, replicas, events), private files, the output type.
It imports no other Shipway package."""
