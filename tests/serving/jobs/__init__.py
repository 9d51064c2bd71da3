"""The jobs service's tests: a package, so its conftest is `jobs.conftest`, not a second top-level `conftest`
that would shadow tests/conftest.py for the modules that import from it."""
