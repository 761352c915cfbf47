"""The one launcher: `python run.py task=<task> optim=<optimizer> [trainer=smoke] [key=value ...]`.

Composes conf/ with Hydra, trains, logs to Weights & Biases and writes results/runs/<task>/<optim>/<run_id>.json.
`python run.py --help` lists the config groups and their choices; `-m` runs a sweep (see the Makefile).
"""

import logging
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from engine.launch import ConfigError, launch
from engine.session import RunFailed, Terminated


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> str:
    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    try:
        return launch(cfg, multirun=multirun)
    except (ConfigError, FileNotFoundError) as e:  # a bad value or a missing dataset: one clear line
        logging.getLogger("run").error("%s", e)
        if multirun:
            return "invalid"
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except RunFailed as e:  # a known cause (e.g. disk full): recorded as `failed` with this line
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    except Terminated:  # SIGTERM: recorded as `interrupted`; SLURM/submitit requeue it with resume=true
        print("interrupted by SIGTERM; the run is recorded as interrupted (continue it with resume=true)",
              file=sys.stderr)
        sys.exit(143)


if __name__ == "__main__":
    main()
