"""Ours against TRL 1.12's PPOTrainer, alternately, several rounds: the median ratio ours/peer.

    make bench                                         # = the line below, after `make bench-peer`
    .venv/bin/python benchmarks/compare.py --rounds 3 [any ppo_throughput.py flag, passed to both]

Each run is a fresh process (same models, data, settings and seed); rounds alternate ours and the peer so that a
slow spell of the machine hits both. Prints every JSON line, then one summary line; with `--out`, writes them all.

`--bf16` (passed to both) runs both in bf16; `--table FILE...` prints one line per earlier `--out` file (fp32 and bf16
side by side in `make bench`).

`--ours_variant "FLAGS"` adds a third run per round, ours with FLAGS on top (e.g. `--trainable_layers 8`, which
changes the training and so is never the equal-settings figure); the summary gives its samples/s against ours and
against the peer separately.
"""

import argparse
import json
import shlex
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
OURS = HERE / "ppo_throughput.py"
PEER = HERE / "peer_trl112" / "ppo_throughput_trl112.py"


def run(python: str, script: Path, flags: list[str]) -> dict:
    proc = subprocess.run([python, str(script), *flags], capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode or not lines:
        tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
        sys.exit(f"{script.name} failed (exit {proc.returncode}) with {python}:\n{tail}")
    return json.loads(lines[-1])


def summarize(ours: list[dict], peer: list[dict], variant: list[dict] | None = None) -> dict:
    def median(runs, key):
        return statistics.median(r[key] for r in runs)

    out = {
        "rounds": len(ours),
        "ours_samples_per_s": median(ours, "samples_per_s"),
        "peer_samples_per_s": median(peer, "samples_per_s"),
        "ours_peak_rss_mib": median(ours, "peak_rss_mib"),
        "peer_peak_rss_mib": median(peer, "peak_rss_mib"),
        # Ratio of the medians and median of the per-round ratios (the latter pairs runs that ran back to back).
        "speedup_median_of_rounds": statistics.median(
            o["samples_per_s"] / p["samples_per_s"] for o, p in zip(ours, peer, strict=True)
        ),
    }
    out["speedup"] = out["ours_samples_per_s"] / out["peer_samples_per_s"]
    out["peak_rss_ratio"] = out["ours_peak_rss_mib"] / out["peer_peak_rss_mib"]
    if "utilisation/update" in ours[0]:
        out["ours_utilisation_update"] = median(ours, "utilisation/update")
        out["peak_gflops"] = median(ours, "peak_gflops")  # fp32 or bf16, as the runs computed
    if variant:
        out["variant_samples_per_s"] = median(variant, "samples_per_s")
        out["variant_peak_rss_mib"] = median(variant, "peak_rss_mib")
        out["variant_speedup_vs_ours"] = out["variant_samples_per_s"] / out["ours_samples_per_s"]
        out["variant_speedup_vs_peer"] = out["variant_samples_per_s"] / out["peer_samples_per_s"]
    if ours[0]["peak_gpu_mib"] is not None and peer[0]["peak_gpu_mib"] is not None:
        out["ours_peak_gpu_mib"] = median(ours, "peak_gpu_mib")
        out["peer_peak_gpu_mib"] = median(peer, "peak_gpu_mib")
        out["peak_gpu_ratio"] = out["ours_peak_gpu_mib"] / out["peer_peak_gpu_mib"]
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in out.items()}


def table(paths: list[str]) -> str:
    """One line per `--out` file of earlier runs: precision, ours and peer samples/s, their ratio, utilisation."""
    rows = ["scenario | precision | ours samples/s | TRL 1.12 samples/s | ratio ours/peer | ours utilisation (peak)"]
    for path in paths:
        if not Path(path).is_file():
            sys.exit(f"no benchmark results at {path}; run the scenario first (make bench)")
        runs = json.loads(Path(path).read_text())
        s, bf16 = runs["summary"], runs["ours"][0]["settings"].get("bf16", False)
        util = s.get("ours_utilisation_update")
        util = f"{util:.1%} of {s['peak_gflops']:.0f} GFLOP/s" if util is not None else "n/a"
        rows.append(f"{Path(path).stem} | {'bf16' if bf16 else 'fp32'} | {s['ours_samples_per_s']:.3f} | "
                    f"{s['peer_samples_per_s']:.3f} | {s['speedup']:.2f}x | {util}")  # fmt: skip
    return "\n".join(rows)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--python", default=sys.executable, help="Our virtualenv's python.")
    p.add_argument("--peer_python", default=".venv-peer/bin/python", help="The peer's virtualenv (make bench-peer).")
    p.add_argument("--out", default=None, help="Also write every line and the summary to this JSON file.")
    p.add_argument("--ours_variant", default="", help="Ours only, a third run per round with these flags on top.")
    p.add_argument("--table", nargs="+", default=None, help="Only print the table of these earlier --out files.")
    args, flags = p.parse_known_args(argv)
    if args.table:
        print(table(args.table))
        return {}
    if not Path(args.peer_python).is_file():
        sys.exit(f"no peer python at {args.peer_python}; run `make bench-peer` first (installs trl==1.12.0)")
    if args.rounds < 1:
        sys.exit(f"--rounds {args.rounds}: at least 1 round is needed")
    # Our script builds the tiny models for these flags; the peer reads them.
    ours, peer, variant = [], [], []
    extra = shlex.split(args.ours_variant)
    runs_per_round = [("ours", args.python, OURS, [], ours), ("peer", args.peer_python, PEER, [], peer)]
    if extra:
        runs_per_round.append(("ours " + args.ours_variant, args.python, OURS, extra, variant))
    for i in range(args.rounds):
        for name, python, script, more, runs in runs_per_round:
            result = run(python, script, [*flags, *more, "--label", f"{name} round {i + 1}"])
            runs.append(result)
            print(json.dumps(result), flush=True)
    summary = summarize(ours, peer, variant)
    print(json.dumps({"summary": summary}), flush=True)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        lines = {"ours": ours, "peer": peer, **({"variant": variant} if variant else {}), "summary": summary}
        Path(args.out).write_text(json.dumps(lines, indent=1) + "\n")
    return summary


if __name__ == "__main__":
    main()
