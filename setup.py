"""The package list, which setup.cfg cannot say: mammalnet's packages, and the repository's top-level
pipelines/ folder installed as the package data mammalnet/pipelines/ (mammalnet.config.shipped_pipelines_dir).
Everything else is in setup.cfg."""

from setuptools import find_packages, setup

setup(packages=find_packages(include=["mammalnet", "mammalnet.*"]) + ["mammalnet.pipelines", "mammalnet.pipelines.compare"],
      package_dir={"mammalnet.pipelines": "pipelines"})
