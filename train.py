"""Entry point of the clone: `python train.py [overrides]` trains one job; `python train.py -m ...` sweeps.

The same command as the installed `initsweep` (and `python -m initsweep`): same arguments, checks, outputs and
exit statuses; the startup sequence lives in src/initsweep/cli/main.py, the task function in
src/initsweep/cli/entry.py. Examples:

    python train.py -m init=zeros,ones,normal,uniform      # one MLflow child run per initializer
    python train.py --config-dir ./my_conf trainer=quick   # a directory of your own config groups joins
    python train.py --help                                 # every config group and the default config

The command line is checked before Hydra starts (src/initsweep/cli/precheck.py): a config error is one
`initsweep:` line, exit 2, and leaves no output directory behind. Kept import-light (Hydra and OmegaConf
only until a job runs), so that `--help` and `--cfg job` answer quickly.
"""

if __name__ == "__main__":
    from initsweep.cli import command

    command()
