"""Command line: ``python -m toolkit report --out report.html [--quick]``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="toolkit", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    report = commands.add_parser("report", help="write the self-contained HTML report")
    report.add_argument("--out", default="report.html", help="output file (default report.html)")
    report.add_argument("--quick", action="store_true", help="small sizes: a fast run")
    report.add_argument("--sections", help="comma-separated section keys (default: all)")
    report.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    report.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line: ``toolkit report --out report.html [--quick] [--sections ...]``.

    Parameters
    ----------
    argv : sequence of str or None
        The arguments; None reads ``sys.argv``.

    Returns
    -------
    int
        0 on success, 1 when the report fails (the error goes to standard error), 130 on
        SIGINT and 143 on SIGTERM (one line on standard error, no traceback).
    """
    args = _parser().parse_args(argv)
    try:
        from .report import ReportError, all_sections, build_report

        keys = None
        if args.sections is not None:
            keys = [k.strip() for k in args.sections.split(",") if k.strip()]
            if not keys:
                available = ", ".join(s.key for s in all_sections())
                print(
                    f"toolkit report: error: --sections {args.sections!r} names no section; "
                    f"available: {available}",
                    file=sys.stderr,
                )
                return 1
        path = build_report(
            args.out, quick=args.quick, sections=keys, seed=args.seed, progress=not args.no_progress
        )
    except (ReportError, ValueError, OSError) as exc:
        print(f"toolkit report: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("toolkit report: interrupted", file=sys.stderr)
        return 130
    except SystemExit as exc:  # build_report turns SIGTERM into SystemExit(143)
        print("toolkit report: terminated", file=sys.stderr)
        return exc.code if isinstance(exc.code, int) else 1
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
