# pytester's in-process runs forget modules first imported during the run; import what kombu
# needs here so every run shares one set of kombu classes (isinstance checks stay true).

import simamqp.transport  # noqa: F401

pytest_plugins = ["pytester"]
