"""The C extensions of pyswoole; everything else about the package is in pyproject.toml."""

from setuptools import Extension, setup

EXTENSIONS: list[Extension] = [
]

setup(ext_modules=EXTENSIONS)
