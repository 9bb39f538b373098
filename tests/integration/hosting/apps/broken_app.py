"""An application module whose import fails: ``pyswoole serve`` must say why, and exit 1."""

raise RuntimeError("broken on purpose")
