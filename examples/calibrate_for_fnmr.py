"""Choose the quality threshold for the FNMR you need, and check it on people it never saw.

    python examples/calibrate_for_fnmr.py ENROLLMENT --recognizer model.ckpt --target-fnmr 0.05

ENROLLMENT holds one sub-folder per person. Half of the people (seeded) calibrate: the
threshold is the lowest quality at which genuine comparisons between accepted captures
fail at most --target-fnmr of the time, with the recognizer's threshold fixed at --fmr.
The other half check it: their FNMR with the gate should land within the stated tolerance
(the 95% binomial interval of an FNMR measured on that many comparisons). The policy file
it writes is what `facegate filter --policy` and `Gate(policy=...)` read.
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import numpy as np

from facegate import Policy, Weights
from facegate.evaluation import Method, held_out_check, labelled_captures, measure_captures
from facegate.recognition import load_recognizer


def half(measured, pairs, people):
    """The captures of ``people`` and their genuine pairs, re-indexed."""
    keep = np.flatnonzero(np.isin(measured.identities, list(people)))
    remap = -np.ones(len(measured.identities), int)
    remap[keep] = np.arange(len(keep))
    inside = np.all(np.isin(pairs, keep), 1)
    return measured.subset(keep), remap[pairs[inside]]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("enrollment")
    parser.add_argument("--recognizer", required=True, help="MobileFaceNet checkpoint or module:factory")
    parser.add_argument("--target-fnmr", type=float, default=0.05)
    parser.add_argument("--fmr", type=float, default=1e-3)
    parser.add_argument("--policy-out", default=None, help="write the calibrated policy here")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    images, identities, genuine_pairs = labelled_captures(args.enrollment)
    measured = measure_captures(images, identities, recognizer=load_recognizer(args.recognizer),
                                views=("full",), baselines=False)
    people = sorted(set(identities))
    np.random.default_rng(args.seed).shuffle(people)
    calibration, held_out = half(measured, genuine_pairs, people[: len(people) // 2]), \
        half(measured, genuine_pairs, people[len(people) // 2 :])

    cal, cal_pairs = calibration
    test, test_pairs = held_out
    check = held_out_check(cal, cal_pairs, test, test_pairs, quality=Method("ensemble", "full"),
                           target_fnmr=args.target_fnmr, fmr=args.fmr)
    choice, held = check["calibration"], check["held_out"]
    threshold = float(np.clip(choice["quality_threshold"], 0, 100))
    print(f"calibrated on {len(cal.names)} captures of {len(people) // 2} people: quality threshold {threshold:.2f}, "
          f"recognizer threshold {choice['comparison_threshold']:.4f} (FMR {args.fmr:g}); expected FNMR "
          f"{choice['fnmr']:.4f}, reject rate {choice['reject_rate']:.1%}"
          f"{'' if choice['reached'] else ' (target not reachable)'}")
    verdict = "within" if held["within_tolerance"] or held["fnmr"] <= args.target_fnmr else "outside"
    print(f"held out ({len(test.names)} captures of {len(people) - len(people) // 2} other people): FNMR "
          f"{held['fnmr']:.4f} with the gate on {held['genuine_kept']} genuine comparisons "
          f"({held['fnmr_without_gate']:.4f} without), reject rate {held['reject_rate']:.1%}; "
          f"target {args.target_fnmr:.4f} +- {held['tolerance_95']:.4f}: {verdict}")
    if args.policy_out:
        # the threshold means something only on the scale of the weights that scored these captures
        replace(Policy(), min_score=threshold, score_scale=Weights.DEFAULT.spec.score_scale).save(args.policy_out)
        print(f"policy written to {args.policy_out}")


if __name__ == "__main__":
    main()
