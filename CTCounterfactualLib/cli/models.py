"""``ctcf models list | download | verify | path``: the catalog's models on this machine."""

from __future__ import annotations

import argparse

from CTCounterfactualLib.errors import CTCFError
from CTCounterfactualLib.store.download import cache_dir

MODELS_HELP = """\
The model catalog: bundled demo models and the published models of the paper, downloaded on demand.

Downloads go to a cache folder: --cache-dir, else $CTCF_CACHE_DIR, else the platform's cache folder
(~/.cache/ctcounterfactual on Linux). A download resumes after an interruption and is checked (size and
SHA256) before it is moved into place. Where no SHA256 is published, the first verified download records
it in <cache>/hashes.json and later checks use that.

States in `list`: bundled, downloaded, not downloaded, damaged (re-hash with `verify`).
Behind a firewall: download the URL given in the error message yourself and put the file where it says.
"""


def _size(n: int | None, exact: bool) -> str:
    if n is None:
        return "unknown"
    for unit, div in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= div:
            return f"{'' if exact else '~'}{n / div:.1f} {unit}"
    return f"{n} B"


def _run_list(args: argparse.Namespace) -> int:
    from CTCounterfactualLib.store.cache import model_states, target_names

    rows = [("NAME", "KIND", "FORMAT", "TARGETS", "SIZE", "STATE")]
    for entry, state in model_states(args.cache_dir):
        exact = entry.bundled or all(f.bytes is not None for f in entry.files)
        n = len(target_names(entry, args.cache_dir)) or entry.n_targets()
        rows.append(
            (entry.name, entry.kind, entry.format, "-" if not n else str(n), _size(entry.size_bytes(), exact), state)
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    print(f"cache: {cache_dir(args.cache_dir)}")
    return 0


def _run_download(args: argparse.Namespace) -> int:
    from CTCounterfactualLib.store.cache import download_model, recorded_hashes

    for name in args.names:
        paths = download_model(name, args.cache_dir, bar=True, timeout=args.timeout)
        hashes = recorded_hashes(args.cache_dir)
        for p in paths:
            rec = hashes.get(f"{p.parent.name}/{p.name}")
            note = f" (SHA256 {rec['sha256'][:16]}... recorded {rec['recorded']})" if rec else ""
            print(f"{name}: {p}{note}")
    return 0


def _run_verify(args: argparse.Namespace) -> int:
    from CTCounterfactualLib.store.cache import model_state, verify_model
    from CTCounterfactualLib.store.catalog import get_entry, read_catalog

    entries = [get_entry(args.name)] if args.name else list(read_catalog().values())
    damaged: list[str] = []
    for entry in entries:
        if not args.name and model_state(entry, args.cache_dir) == "not downloaded":
            print(f"{entry.name}: not downloaded")
            continue
        try:
            paths = verify_model(entry.name, args.cache_dir)
        except CTCFError as e:
            damaged.append(str(e))
            print(f"{entry.name}: DAMAGED")
            continue
        print(f"{entry.name}: ok ({len(paths)} file{'s' if len(paths) > 1 else ''})")
    if damaged:
        raise CTCFError(damaged[0] + (f" ({len(damaged) - 1} more damaged)" if len(damaged) > 1 else ""))
    return 0


def _run_path(args: argparse.Namespace) -> int:
    from CTCounterfactualLib.store.cache import local_files

    files = local_files(args.name, args.cache_dir)
    print(files["config"] if args.config and "config" in files else files["weights"])
    if args.config and "config" not in files:
        raise CTCFError(f"model {args.name} has no config file")
    return 0


def add_models_parser(sub) -> None:
    """Register ``ctcf models`` and its subcommands."""
    p = sub.add_parser(
        "models",
        help="list, download and verify the catalog's models",
        description=MODELS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--cache-dir", default=None, help="download cache folder (default: $CTCF_CACHE_DIR or the platform's)"
    )
    p.set_defaults(needs_torch=False)  # the catalog and the cache's files: no model is loaded
    msub = p.add_subparsers(dest="models_command", required=True)
    # also accepted after the subcommand; SUPPRESS keeps a value given before it
    cache = argparse.ArgumentParser(add_help=False)
    cache.add_argument("--cache-dir", default=argparse.SUPPRESS, help="download cache folder")

    q = msub.add_parser("list", parents=[cache], help="every model with kind, targets, size and state")
    q.set_defaults(func=_run_list)
    q = msub.add_parser("download", parents=[cache], help="download (resume) and verify every file of a model")
    q.add_argument("names", nargs="+", metavar="NAME")
    q.add_argument("--timeout", type=float, default=30.0, help="seconds without data before giving up (default 30)")
    q.set_defaults(func=_run_download)
    q = msub.add_parser(
        "verify", parents=[cache], help="re-hash a model's files (all present models without NAME); exit 2 if damaged"
    )
    q.add_argument("name", nargs="?", metavar="NAME")
    q.set_defaults(func=_run_verify)
    q = msub.add_parser("path", parents=[cache], help="print the local weights file of a model")
    q.add_argument("name", metavar="NAME")
    q.add_argument("--config", action="store_true", help="print the config file (taming YAML) instead")
    q.set_defaults(func=_run_path)
