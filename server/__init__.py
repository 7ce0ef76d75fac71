"""The composition root: settings, the wiring of every part into one Twisted
reactor (`shipway server`), and the services object handed down to each part."""
