"""A pytest plugin loaded with ``-p`` (see pyproject.toml), before pytest-django reads the settings:
the tests run on the embedded demo profile unless the environment says otherwise."""

import os

os.environ.setdefault("DEBUG", "1")
