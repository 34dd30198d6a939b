"""mespot.engine: everything learned (datasets, networks, methods, proposals, evaluation, runtime)."""
