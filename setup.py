"""What pyproject.toml cannot say: the top-level `config/` folder is installed as the package `labhub_config`,
every file of it and of its subfolders (arm profiles, rubrics, ...) as package data. All package data is listed
here: setuptools lets a pyproject.toml package-data table replace this one."""

from pathlib import Path

from setuptools import find_namespace_packages, setup

DATA = "labhub_config"
subfolders = sorted(p.name for p in Path("config").iterdir() if p.is_dir() and p.name != "__pycache__")

setup(
    packages=[
        *find_namespace_packages(include=["hub*", "devices*", "firmware_sim*"], exclude=["*__pycache__"]),
        DATA,
        *(f"{DATA}.{d}" for d in subfolders),
    ],
    package_dir={DATA: "config"},
    package_data={
        "hub.web.static": ["*"],  # the pages and their vendored scripts: data folders, as namespace packages
        "hub.web.static.vendor.uplot": ["*"],
        DATA: ["*.toml", "*.in"],
        **{f"{DATA}.{d}": ["*"] for d in subfolders},
    },
)
