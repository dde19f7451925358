"""The one place the pgmodels version is written.

The extension's control file, META.json, pyproject and the built install script all
take the version from here (see extension/Makefile and pyproject.toml).
"""

__version__ = "0.3.0"
