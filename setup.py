"""The C extensions of pyswoole; everything else about the package is in pyproject.toml."""

from setuptools import Extension, setup

EXTENSIONS: list[Extension] = [
    Extension("pyswoole.state._shm", ["src/pyswoole/state/_shm.c"], extra_compile_args=["-O2", "-Wall", "-Wextra"]),
    Extension("pyswoole.websocket._mask", ["src/pyswoole/websocket/_mask.c"]),
]

setup(ext_modules=EXTENSIONS)
