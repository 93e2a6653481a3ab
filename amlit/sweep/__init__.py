"""wandb sweeps: validate sweep files offline, render the agent's command, run grid/random sweeps locally."""

from amlit.sweep.command import render_command
from amlit.sweep.params import expand_grid, sample_random
from amlit.sweep.runner import isolate_trial_outputs, read_final_metric, run_sweep
from amlit.sweep.schema import load_sweep, sweep_problems, validate_sweep

__all__ = [
    "expand_grid",
    "isolate_trial_outputs",
    "load_sweep",
    "read_final_metric",
    "render_command",
    "run_sweep",
    "sample_random",
    "sweep_problems",
    "validate_sweep",
]
