# pytester itself is enabled for the whole run with `-p pytester` (pyproject addopts): a
# pytest_plugins list is only allowed in the rootdir conftest. Nothing is imported here on
# purpose: the simamqp plugin itself makes repeated in-process pytester runs safe (see
# test_plugin_inline_runs.py), so these tests see what a user's own pytester tests see.
