"""Packages of the wheel: ``segfpn*`` plus the repository's ``configs/`` as ``segfpn.configs`` and
``experiments/*.yaml`` as ``segfpn.configs.experiments`` (one copy in the
repository, package data in the wheel, so that ``segfpn fit --config demo`` works after ``pip install``).
The rest of the metadata is in pyproject.toml."""

from setuptools import find_namespace_packages, find_packages, setup

CONFIGS = ["segfpn.configs"] + [f"segfpn.configs.{p}" for p in find_namespace_packages(where="configs")]

setup(
    packages=find_packages(include=["segfpn*"]) + CONFIGS + ["segfpn.configs.experiments"],
    package_dir={"segfpn.configs": "configs", "segfpn.configs.experiments": "experiments"},
)
