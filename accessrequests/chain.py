"""The offline audit verifier's command, where scripts and the README have always called it:

    python -m accessrequests.chain verify audit-export.csv      # or .jsonl; reads audit-export.csv.manifest.json
    python /path/to/gatehouse/accessrequests/chain.py verify audit-export.csv   # the same, from any folder

The chain and the verifier live in ``accessrequests.ledger`` (standard library only, no Django).
"""

if __name__ == "__main__":
    import sys
    from pathlib import Path

    if not __package__:
        # Run by its path from any folder: Python put this file's folder on sys.path; the repository root, which
        # holds the package, is what belongs there (a module here must never shadow the standard library's).
        here = Path(__file__).resolve().parent
        sys.path[:] = [str(here.parent)] + [p for p in sys.path if Path(p or ".").resolve() != here]
    from accessrequests.ledger.offline import main

    sys.exit(main(sys.argv[1:]))
