"""Markdown table of mlearn benchmark JSON files beside the published GAP/MTP figures.

When an element was run with several configurations, the one with the lower *validation* score
(the training loss on the validation split: E RMSE² + 0.02·F RMSE²) is marked as selected; the test
numbers never take part in that choice.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ORDER = ["Ni", "Cu", "Li", "Mo", "Si", "Ge"]


def validation_score(result: dict) -> float:
    valid = result["best_valid"]
    return (valid["valid_energy_rmse_mev_per_atom"] / 1000) ** 2 + 0.02 * valid[
        "valid_force_rmse_ev_per_a"
    ] ** 2


def main(paths: list[str]) -> None:
    by_element: dict[str, list[dict]] = {}
    for path in paths:
        data = json.loads(Path(path).read_text())
        for res in data.get("results", [data]):
            by_element.setdefault(res["element"], []).append(res)
    print(
        "| element | config | valid F MAE (eV/Å) | test E MAE (meV/atom) | best GAP/MTP E "
        "| test F MAE (eV/Å) | best GAP/MTP F | train wall s (CPU s) | epochs |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for el in ORDER:
        runs = sorted(by_element.get(el, []), key=validation_score)
        for rank, r in enumerate(runs):
            name = Path(r.get("config", "default")).stem
            mark = " (selected)" if rank == 0 and len(runs) > 1 else ""
            print(
                f"| {el} | {name}{mark} | {r['best_valid']['valid_force_mae_ev_per_a']:.3f} | "
                f"{r['energy_mae_mev_per_atom']:.2f} | "
                f"{r['published_best_energy_mae_mev_per_atom']:.2f} | "
                f"{r['force_mae_ev_per_a']:.3f} | {r['published_best_force_mae_ev_per_a']:.2f} | "
                f"{r['train_seconds']:.0f} ({r.get('train_cpu_seconds', float('nan')):.0f}) | "
                f"{r['epochs']} |"
            )


if __name__ == "__main__":
    main(sys.argv[1:])
