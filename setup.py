"""Package layout for setuptools (the metadata is in pyproject.toml).

The recipes stay in the top-level `configs/` folder of the checkout and ship inside the wheel
as `jssl/configs/`, where `jssl.config_files` finds them once installed. pyproject.toml's
`packages.find` cannot add a package that lives outside `jssl/`, hence this file.
"""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["jssl", "jssl.*"]), "jssl.configs"],
    package_dir={"jssl.configs": "configs"},
)
