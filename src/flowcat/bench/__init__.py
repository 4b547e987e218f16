"""Benchmarks run by ``flowcat bench``. Each compares against pipecat in the same run."""
