"""Print a Markdown table of mlearn benchmark JSON files beside the published GAP/MTP figures."""

from __future__ import annotations

import json
import sys
from pathlib import Path

ORDER = ["Ni", "Cu", "Li", "Mo", "Si", "Ge"]


def main(paths: list[str]) -> None:
    rows = {}
    for path in paths:
        data = json.loads(Path(path).read_text())
        for res in data.get("results", [data]):
            rows[res["element"]] = res
    print("| element | E MAE (meV/atom) | best GAP/MTP E | F MAE (eV/Å) | best GAP/MTP F "
          "| train wall s (CPU s) | epochs |")
    print("|---|---|---|---|---|---|---|")
    for el in ORDER:
        if el not in rows:
            continue
        r = rows[el]
        print(f"| {el} | {r['energy_mae_mev_per_atom']:.2f} | "
              f"{r['published_best_energy_mae_mev_per_atom']:.2f} | "
              f"{r['force_mae_ev_per_a']:.3f} | {r['published_best_force_mae_ev_per_a']:.2f} | "
              f"{r['train_seconds']:.0f} ({r.get('train_cpu_seconds', float('nan')):.0f}) | "
              f"{r['epochs']} |")


if __name__ == "__main__":
    main(sys.argv[1:])
