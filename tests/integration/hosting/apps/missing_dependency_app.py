"""An application module that imports a package that is not installed."""

import no_such_dependency_xyz  # noqa: F401

app = None
