"""gandist test suite (a package, so `tests.*` imports resolve to this repo, not to a
`tests` package some dependency installs into site-packages: torch-fidelity does)."""
