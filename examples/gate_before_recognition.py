"""Gate captures before a recognition model sees them.

An enrollment pipeline: assess each capture once, enrol only accepted ones, and tell the
operator why the others were refused. With ``--recognizer`` (the MobileFaceNet checkpoint
in ../shared/models) accepted faces are embedded, reusing the landmarks facegate found.

    python examples/gate_before_recognition.py tests/fixtures/*.jpg
    python examples/gate_before_recognition.py --recognizer ../shared/models/mobilefacenet_casia.ckpt tests/fixtures/*.jpg
"""

from __future__ import annotations

import argparse

from facegate import REASONS, Gate, Policy


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("images", nargs="+")
    parser.add_argument("--recognizer", help="MobileFaceNet checkpoint; embeds accepted faces")
    parser.add_argument("--threshold", type=float, default=None, help="override the default quality threshold")
    parser.add_argument("--profile", default="verification",
                        help="policy profile: verification (default), enrollment (strict portrait rules), surveillance")
    args = parser.parse_args(argv)

    gate = Gate(policy=Policy.from_profile(args.profile, min_score=args.threshold), threads=2, batch_size=16)
    recognizer = None
    if args.recognizer:
        from facegate.recognition import MobileFaceNetRecognizer

        recognizer = MobileFaceNetRecognizer(args.recognizer)

    enrolled = {}
    for result in gate.assess_many(args.images):
        if not result.accepted:
            why = "; ".join(REASONS[r] for r in result.reasons) or result.error or "no face found"
            print(f"refused  {result.source}: {result.status} - {why}" + (f" ({result.prompt})" if result.prompt else ""))
            continue
        print(f"accepted {result.source}: score {result.score:.1f} (threshold {gate.policy.min_score:.1f})")
        if recognizer is not None:
            from facegate.images import load_rgb

            rgb = load_rgb(result.source)
            enrolled[result.source] = recognizer.embed([rgb], [result.face.landmarks])[0]
    if enrolled:
        names = list(enrolled)
        print("cosine similarity of enrolled faces:")
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                print(f"  {float(enrolled[a] @ enrolled[b]):+.3f}  {a}  {b}")


if __name__ == "__main__":
    main()
