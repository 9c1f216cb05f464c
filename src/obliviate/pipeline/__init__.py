"""The pipeline: presets, stages, job chains, the process pool and the speed bench, run by the commands."""
