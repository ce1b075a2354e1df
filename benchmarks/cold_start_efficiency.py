"""Cold-start efficiency of each model in a `dcue score --json` report: how much of the
reachable gain over popularity it reaches.

    E_fit = (AUC_model - AUC_pop) / (AUC_fitted - AUC_pop)  the reachable ceiling: true styles,
                                                             tastes fitted to the training plays
                                                             (reachable_ceiling.py; when scored)
    E = (AUC_model - AUC_pop) / (AUC_ceiling - AUC_pop)     the content ceiling: the generator's
                                                             own scores (synth's truth.h5)
    G = (AUC_model - AUC_pop) / (AUC_wmf - AUC_pop)          the paper's framing: WMF saw the
                                                             test songs, so it is no cold-start target

The report must hold the popularity row (`--popularity`), the ceiling (a model whose source
ends in "truth", e.g. `truth.h5` scored as one more file) and, for G, WMF (source `wmf`).
Optionally `--audio-ceiling NAME` adds E relative to another row, e.g. the same audio network
regressed onto the true styles (`dcue train --objective regress --target truth.h5`): what the
network can hear at best when told exactly what to listen for.

    dcue score dcue.h5 wmf_regression.h5 wmf.h5 data/truth.h5 --popularity --plays sub/plays.tsv \\
        --splits sub/splits.tsv --json > recommendation.json
    python benchmarks/cold_start_efficiency.py recommendation.json
"""

import argparse
import json
import sys


def efficiency(report: dict, audio_ceiling: str = "") -> tuple:
    """(rows, auc by name, popularity, ceiling, wmf names); a row is (name, auc, E, E_audio, G) for
    every model that is not a reference."""
    models = report["models"]
    auc = {m["name"]: m["metrics"]["auc"]["mean"] for m in models}
    by_source = {m.get("source", ""): m["name"] for m in models}
    pop = next((m["name"] for m in models if m.get("source") == "popularity"), None)
    ceiling = next((m["name"] for m in models if str(m.get("source", "")).endswith("truth")), None)
    wmf = by_source.get("wmf")
    if pop is None or ceiling is None:
        raise SystemExit("the report needs the popularity row (score --popularity) and the ceiling "
                         "(score the generator's truth.h5 as one more file)")
    if audio_ceiling and audio_ceiling not in auc:
        raise SystemExit(f"--audio-ceiling {audio_ceiling!r} is not a model of the report: "
                         f"{', '.join(auc)}")
    fitted = next((m["name"] for m in models if m.get("source") == "fitted-ceiling"), None)
    refs = {pop, ceiling, wmf, audio_ceiling, fitted}

    def ratio(value, top):
        return (value - auc[pop]) / (auc[top] - auc[pop]) if top else float("nan")

    return [(name, auc[name], ratio(auc[name], ceiling), ratio(auc[name], audio_ceiling),
             ratio(auc[name], wmf), ratio(auc[name], fitted)) for name in auc if name not in refs], \
        auc, pop, ceiling, wmf, fitted


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("report", help="dcue score --json output ('-': stdin)")
    p.add_argument("--audio-ceiling", default="", help="the name of a row to use as a second ceiling")
    args = p.parse_args()
    if args.report == "-":
        report = json.load(sys.stdin)
    else:
        with open(args.report, encoding="utf-8") as f:
            report = json.load(f)
    rows, auc, pop, ceiling, wmf, fitted = efficiency(report, args.audio_ceiling)
    print(f"cold-start AUC on {report['items']:,} test {report['item_word']}, {report['users']:,} users")
    print(f"  popularity {auc[pop]:.4f}   content ceiling ({ceiling}) {auc[ceiling]:.4f}"
          + (f"   WMF {auc[wmf]:.4f}" if wmf else "")
          + (f"   reachable ceiling {auc[fitted]:.4f}" if fitted else "")
          + (f"   audio ceiling ({args.audio_ceiling}) {auc[args.audio_ceiling]:.4f}" if args.audio_ceiling else ""))
    head = (f"{'model':<28}{'AUC':>8}" + (f"{'E_fit':>8}" if fitted else "") + f"{'E':>8}"
            + (f"{'E audio':>9}" if args.audio_ceiling else "") + f"{'G':>8}")
    print(head)
    for name, value, e, e_audio, g, e_fit in rows:
        print(f"{name:<28}{value:>8.4f}" + (f"{e_fit:>8.2f}" if fitted else "") + f"{e:>8.2f}"
              + (f"{e_audio:>9.2f}" if args.audio_ceiling else "") + f"{g:>8.2f}")
    print(("E_fit: share of the reachable ceiling's gain over popularity (target >= 0.8); " if fitted else "")
          + "E: share of the content ceiling's (true tastes') gain; G: the paper's framing against WMF "
          "(paper: DCUE 0.38 on the MSD)")


if __name__ == "__main__":
    main()
