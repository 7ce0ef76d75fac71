"""The composition root: builds every part from the one settings object and
wires them into one Twisted reactor (`shipway server`); nothing below imports it."""
