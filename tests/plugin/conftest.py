# pytester's in-process runs forget modules first imported during the run; import what kombu
# needs here so every run shares one set of kombu classes (isinstance checks stay true).

import simamqp.transport  # noqa: F401
# pytester itself is enabled for the whole run with `-p pytester` (pyproject addopts): a
# pytest_plugins list is only allowed in the rootdir conftest.
