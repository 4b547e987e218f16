"""Benchmarks run by ``flowcat bench``. Each compares against pipecat in the same run.

Each benchmark is a module here (``capacity``, ``micro``, ``vad``) with ``add_arguments`` and ``main``.
"""

__all__: list[str] = []
