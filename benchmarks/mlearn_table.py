"""Markdown tables of the mlearn benchmark, every model family side by side with the published
GAP/MTP figures and the issue-7 target (test MAE ≤ 0.8 × best(GAP, MTP)).

    python benchmarks/mlearn_table.py                      # all results/mlearn_<family>_<El>.json
    python benchmarks/mlearn_table.py --all-configs        # also the non-selected variants
    python benchmarks/mlearn_table.py FILE.json ...        # only these files

Files are ``benchmarks/results/mlearn_<family>[_variant]_<El>.json`` as written by
``benchmarks/mlearn.py``; the family is the JSON's ``model`` key. Families with no file for an
element are listed as "not run". When a family was run with several configurations on one element,
the one with the lower *validation* score (the training loss on the validation split:
E RMSE² + 0.02·F RMSE²) is the selected row; the test numbers never take part in that choice.
"Ratio" is test MAE ÷ (0.8 × best published); ≤ 1 meets the target. The best family per element
is the one with the lowest max(E ratio, F ratio) on the test set — a report of the outcome, not a
model selection. MD throughput (atom-steps per CPU second of the MD worker, 1 thread, ~500-atom
cell; CPU rather than wall seconds so that a loaded machine does not distort it) comes from
``benchmarks/family_md_speed.py``'s JSON where it has the element (Cu, Si).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import re
from pathlib import Path

ORDER = ["Ni", "Cu", "Li", "Mo", "Si", "Ge"]
FAMILIES = ["bpnn", "painn", "kernel", "mace", "ace"]
TARGET_FACTOR = 0.8
MD_REFERENCE = {"Cu": ["emt"], "Si": ["kumagai"]}
RESULTS = Path(__file__).resolve().parent / "results"
_NAME = re.compile(r"^mlearn_(?P<stem>.+)_(?P<el>[A-Z][a-z]?)\.json$")


def _published() -> dict[str, dict[str, tuple[float, float]]]:
    """PUBLISHED from benchmarks/mlearn.py (GAP and MTP test MAE: meV/atom, eV/Å)."""
    spec = importlib.util.spec_from_file_location("_mlearn", Path(__file__).with_name("mlearn.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.PUBLISHED


PUBLISHED = _published()


def validation_score(result: dict) -> float:
    """E RMSE² (eV/atom)² + 0.02·F RMSE² on the validation split; inf when not recorded."""
    valid = result.get("best_valid") or {}
    try:
        return (valid["valid_energy_rmse_mev_per_atom"] / 1000) ** 2 + 0.02 * valid[
            "valid_force_rmse_ev_per_a"
        ] ** 2
    except KeyError:
        return math.inf


def load_results(paths: list[Path]) -> dict[str, dict[str, list[dict]]]:
    """{element: {family: [result, ...]}} from mlearn JSON files (single or {"results": [...]})."""
    out: dict[str, dict[str, list[dict]]] = {}
    for path in paths:
        data = json.loads(Path(path).read_text())
        match = _NAME.match(Path(path).name)
        for res in data.get("results", [data]):
            family = res.get("model") or (match["stem"].split("_")[0] if match else "?")
            res = {**res, "_file": Path(path).name}
            out.setdefault(res["element"], {}).setdefault(family, []).append(res)
    return out


def ranked(runs: list[dict]) -> list[dict]:
    """Runs of one family on one element, the selected (lowest validation score) first."""
    return sorted(runs, key=lambda r: (validation_score(r), r.get("_file", "")))


def targets(element: str) -> tuple[float, float]:
    """(energy target meV/atom, force target eV/Å) = 0.8 × best published GAP/MTP."""
    pub = PUBLISHED[element].values()
    return TARGET_FACTOR * min(v[0] for v in pub), TARGET_FACTOR * min(v[1] for v in pub)


def ratios(result: dict) -> tuple[float, float]:
    """Test MAE ÷ target for energy and forces (≤ 1 meets the target)."""
    e_t, f_t = targets(result["element"])
    return result["energy_mae_mev_per_atom"] / e_t, result["force_mae_ev_per_a"] / f_t


def best_family(selected: dict[str, dict]) -> str | None:
    """Family with the lowest max(E ratio, F ratio) among the selected runs."""
    if not selected:
        return None
    return min(selected, key=lambda f: (max(ratios(selected[f])), f))


def md_throughput(md: dict | None, element: str, family: str, config: str | None = None) -> str:
    """Atom-steps per CPU second of the worker (robust to machine load), or a status.

    With `config`, a measurement of a model trained with another config (another architecture,
    e.g. more sparse points) is not shown; the same config with a longer budget is.
    """
    if not md:
        return "–"
    row = md.get("results", {}).get(element, {}).get(family)
    if row is None:
        return "–"
    measured = row.get("mlearn_config")
    if config and measured and Path(measured).name != Path(config).name:
        return "not measured"
    if row.get("status") != "ok":
        return row.get("status", "–")
    return f"{row['atom_steps_per_cpu_s']:,.0f}"


def _config_name(r: dict) -> str:
    """The config file's stem, plus the result file's variant when the config does not name it
    (e.g. ``mlearn_painn_30min_Cu.json`` run with ``mlearn_painn.yaml`` → "mlearn_painn, 30min")."""
    name = Path(r.get("config", "default")).stem
    match = _NAME.match(r.get("_file", ""))
    variant = match["stem"].partition("_")[2] if match else ""
    if variant and variant not in name:
        name += f", {variant}"
    return name


def table(
    results: dict[str, dict[str, list[dict]]],
    md: dict | None = None,
    families: list[str] | None = None,
    all_configs: bool = False,
) -> str:
    families = families or FAMILIES
    extra = sorted({f for by in results.values() for f in by} - set(families))
    families = [*families, *extra]
    lines = [
        "| element | family (config) | test E MAE (meV/atom) | E ratio | test F MAE (eV/Å) "
        "| F ratio | train wall s (CPU s) | MD atom-steps per CPU s | best |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    summary = []
    for el in ORDER:
        by_family = results.get(el, {})
        selected = {f: ranked(by_family[f])[0] for f in families if by_family.get(f)}
        best = best_family(selected)
        e_t, f_t = targets(el)
        for name, (e_pub, f_pub) in PUBLISHED[el].items():
            lines.append(
                f"| {el} | {name.upper()} (published) | {e_pub:.2f} | {e_pub / e_t:.2f} | "
                f"{f_pub:.2f} | {f_pub / f_t:.2f} | | | |"
            )
        for ref in MD_REFERENCE.get(el, []):
            if md_throughput(md, el, ref) != "–":
                lines.append(
                    f"| {el} | {ref} (MD reference only) | | | | | | "
                    f"{md_throughput(md, el, ref)} | |"
                )
        for family in families:
            runs = ranked(by_family.get(family, []))
            if not runs:
                lines.append(f"| {el} | {family} | not run | | | | | | |")
                continue
            for rank, r in enumerate(runs if all_configs else runs[:1]):
                e_ratio, f_ratio = ratios(r)
                mark = ", selected" if rank == 0 and len(runs) > 1 else ""
                md_cell = md_throughput(md, el, family, r.get("config")) if rank == 0 else ""
                is_best = "**best**" if rank == 0 and family == best else ""
                cpu = r.get("train_cpu_seconds", float("nan"))
                lines.append(
                    f"| {el} | {family} ({_config_name(r)}{mark}) | "
                    f"{r['energy_mae_mev_per_atom']:.2f} | {e_ratio:.2f} | "
                    f"{r['force_mae_ev_per_a']:.3f} | {f_ratio:.2f} | "
                    f"{r['train_seconds']:.0f} ({cpu:.0f}) | {md_cell} | {is_best} |"
                )
        if best is not None:
            b = selected[best]
            ok = max(ratios(b)) <= 1.0
            summary.append(
                f"- {el}: target E ≤ {e_t:.2f} meV/atom, F ≤ {f_t:.3f} eV/Å; best family "
                f"**{best}** (E ratio {ratios(b)[0]:.2f}, F ratio {ratios(b)[1]:.2f}): "
                f"{'meets' if ok else 'does not meet'} the target"
            )
        else:
            summary.append(f"- {el}: no family run")
    return "\n".join(lines + [""] + summary)


def _module():
    spec = importlib.util.spec_from_file_location("_mlearn", Path(__file__).with_name("mlearn.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _pair(e: float | None, f: float | None) -> str:
    e_txt = "–" if e is None else f"{e:.2f}"
    f_txt = "–" if f is None else f"{f:.3f}"
    return f"{e_txt} / {f_txt}"


def issue11_table(results_dir: Path = RESULTS) -> str:
    """The linear-ACE table of issue 11: test MAE beside the best of GAP/MTP/ACE and SNAP.

    Reads ``mlearn_ace_<El>.json`` (benchmarks/mlearn.py --model ace) and, when present,
    ``mlearn_snap.json`` (the mlearn authors' SNAP/qSNAP evaluated through LAMMPS).
    """
    mod = _module()
    snap_path = results_dir / "mlearn_snap.json"
    snap = {}
    if snap_path.exists():
        for row in json.loads(snap_path.read_text()).get("rows", []):
            snap[(row["element"], row["model"])] = row
    lines = [
        "| element | ace test E / F MAE | target E / F (best GAP, MTP, ACE) | meets | "
        "SNAP E / F | qSNAP E / F | fit wall s (CPU s) | peak MB | test 95 % coverage E / F |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for el in ORDER:
        path = results_dir / f"mlearn_ace_{el}.json"
        target = mod.ISSUE11_TARGET[el]
        snap_cells = []
        for variant in ("SNAP", "qSNAP"):
            row = snap.get((el, variant))
            snap_cells.append(
                _pair(row["energy_mae_mev_per_atom"], row["force_mae_ev_per_a"]) if row else "–"
            )
        if not path.exists():
            lines.append(
                f"| {el} | not run | {_pair(*target)} | | {snap_cells[0]} | {snap_cells[1]} | | | |"
            )
            continue
        r = json.loads(path.read_text())
        e, f = r["energy_mae_mev_per_atom"], r["force_mae_ev_per_a"]
        meets = ("E" if e <= target[0] else "") + ("F" if f <= target[1] else "")
        cov = r.get("test_calibration") or {}
        cov_txt = " / ".join(
            f"{cov[k]['coverage_95']:.2f}" if k in cov else "–" for k in ("energy", "forces")
        )
        lines.append(
            f"| {el} | {_pair(e, f)} | {_pair(*target)} | {meets or 'no'} | {snap_cells[0]} | "
            f"{snap_cells[1]} | {r['train_seconds']:.0f} ({r.get('train_cpu_seconds', 0):.0f}) | "
            f"{r.get('peak_rss_mb', float('nan')):.0f} | {cov_txt} |"
        )
    return "\n".join(lines)


def _chosen_basis(r: dict) -> str:
    """λ, max total degree and P of the basis the fit chose (``fit.basis_search``)."""
    chosen = ((r.get("fit") or {}).get("basis_search") or {}).get("chosen")
    if not chosen:
        return "–"
    degree = max(chosen["max_degree_per_order"])
    return (
        f"λ {chosen['radial_scale']:g}, degree {degree:g}, rc {chosen['cutoff']:g} Å, "
        f"P {chosen['n_coefficients']:,}"
    )


def _coverage(r: dict, energy_key: str = "energy") -> str:
    cov = r.get("test_calibration") or {}
    return " / ".join(
        f"{cov[k]['coverage_95']:.2f}" if k in cov else "–" for k in (energy_key, "forces")
    )


def search_table(results_dir: Path = RESULTS, stem: str = "ace_search", base: str = "ace") -> str:
    """Linear ACE with the basis chosen on validation (``mlearn_<stem>_<El>.json``) beside the
    fixed-basis rows (``mlearn_ace_<El>.json``) and the target: test MAE, chosen basis, test
    coverage of the energy σ with the earlier calibration rule and the pooled one."""
    mod = _module()
    lines = [
        f"| element | {base} E / F | chosen basis E / F | target E / F | chosen basis "
        "| valid E / F RMSE | fit wall s (CPU s) | load avg "
        "| coverage E / F: earlier rule → pooled |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for el in ORDER:
        old_path = results_dir / f"mlearn_{base}_{el}.json"
        new_path = results_dir / f"mlearn_{stem}_{el}.json"
        old = json.loads(old_path.read_text()) if old_path.exists() else None
        new = json.loads(new_path.read_text()) if new_path.exists() else None
        old_txt = _pair(old["energy_mae_mev_per_atom"], old["force_mae_ev_per_a"]) if old else "–"
        target = _pair(*mod.ISSUE11_TARGET[el])
        if new is None:
            lines.append(f"| {el} | {old_txt} | not run | {target} | | | | | |")
            continue
        valid = (new.get("fit") or {}).get("valid_errors") or {}
        v_txt = _pair(valid.get("energy_rmse_mev_per_atom"), valid.get("force_rmse_ev_per_a"))
        load = max(new.get("load_average_start", [0])[0], new.get("load_average_end", [0])[0])
        lines.append(
            f"| {el} | {old_txt} | "
            f"{_pair(new['energy_mae_mev_per_atom'], new['force_mae_ev_per_a'])} | {target} | "
            f"{_chosen_basis(new)} | {v_txt} | "
            f"{new['train_seconds']:.0f} ({new.get('train_cpu_seconds', 0):.0f}) | {load:.1f} | "
            f"{_coverage(new, 'energy_validation_quantile')} → {_coverage(new)} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("files", nargs="*", type=Path, help="default: results/mlearn_*_*.json")
    p.add_argument("--results-dir", type=Path, default=RESULTS)
    p.add_argument("--md-json", type=Path, default=RESULTS / "family_md_speed.json")
    p.add_argument("--families", default=",".join(FAMILIES))
    p.add_argument("--all-configs", action="store_true", help="list non-selected variants too")
    p.add_argument("--issue11", action="store_true", help="the linear-ACE table (issue 11)")
    p.add_argument(
        "--issue11-search",
        action="store_true",
        help="linear ACE with the basis chosen on validation (mlearn_ace_search_<El>.json)",
    )
    p.add_argument(
        "--search-stem", default="ace_search", help="with --issue11-search: mlearn_<STEM>_<El>.json"
    )
    p.add_argument("--base-stem", default="ace", help="with --issue11-search: the rows to compare")
    args = p.parse_args(argv)
    if args.issue11:
        print(issue11_table(args.results_dir))
        return 0
    if args.issue11_search:
        print(search_table(args.results_dir, args.search_stem, args.base_stem))
        return 0
    files = args.files or sorted(
        f for f in args.results_dir.glob("mlearn_*_*.json") if _NAME.match(f.name)
    )
    md = json.loads(args.md_json.read_text()) if args.md_json.exists() else None
    families = [f.strip() for f in args.families.split(",") if f.strip()]
    print(table(load_results(files), md, families, args.all_configs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
