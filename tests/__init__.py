"""The test suite; `tests.support` holds the helpers tests import."""
