"""Hyper-parameter selection for the mlearn benchmark on *validation data only*.

Splits EL/train.xyz into train/validation (test.xyz is never opened), trains one configuration
and prints the validation errors, so that choices never see the test set.

    python benchmarks/tune_mlearn.py --element Cu --config my.yaml --max-time 300
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

DEFAULT_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "mlearn"


def main() -> None:
    from matloop.data import read_dataset
    from matloop.training import TrainConfig, load_train_config, train

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--element", required=True)
    parser.add_argument("--config", type=Path)
    parser.add_argument("--max-time", type=float, default=300.0)
    parser.add_argument("--work-dir", type=Path, default=Path("benchmarks/runs/tune"))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    cfg = load_train_config(args.config) if args.config else TrainConfig()
    cfg.training.loss.stress = 0.0
    data = read_dataset(args.data_dir / args.element / "train.xyz")
    start = time.perf_counter()
    result = train(data, args.work_dir, cfg, max_time=args.max_time, progress=False)
    row = {
        "element": args.element,
        "config": str(args.config),
        "seconds": round(time.perf_counter() - start, 1),
        "epochs": result.epochs,
        **{k: v for k, v in result.best_metrics.items() if k.startswith("valid_")},
    }
    print(json.dumps(row))
    if args.json:
        args.json.write_text(json.dumps(row, indent=2))


if __name__ == "__main__":
    main()
