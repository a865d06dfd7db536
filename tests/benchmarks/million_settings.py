"""Settings of the million-order benchmark's gunicorn: the project's, plus the bare floor view's URL."""

from config.settings import *  # noqa: F403

ROOT_URLCONF = "tests.benchmarks.million_urls"
