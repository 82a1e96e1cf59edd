"""Maps the top-level configs/ folder into the wheel as ``recbench._configs`` (the rest is in pyproject)."""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["recbench", "recbench.*"]), "recbench._configs"],
    package_dir={"recbench._configs": "configs"},
)
