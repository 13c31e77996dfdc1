"""``showsay memory list|forget|label|export|import|check``: work on the memory file directly.

For maintenance, backups and moving a robot's memory to another robot. While the daemon runs,
use ``showsay forget/label`` instead (the daemon keeps its own copy of the pairs in RAM): the
changing subcommands (forget, label, import) take the state directory's lock
(:class:`edge.memory.StateDirLock`, the one a running daemon holds) of the directory the memory
file is in, and refuse in one line naming the holder when a daemon or another such command holds
it. The reading ones (list, export, check) take no lock and work while a daemon runs. Output is
JSON lines.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from edge.config import ConfigError, load_config
from edge.memory import DAEMON_HOLDER, SCHEMA_VERSION, Memory, MemoryError_, StateDirInUse, StateDirLock

CHANGING = {"forget", "label", "import"}


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``memory`` and its subcommands."""
    p = sub.add_parser("memory", help="list, forget, label, export, import or check the stored pairs (works on the file)")
    msub = p.add_subparsers(dest="memory_command", metavar="ACTION", required=True)

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        q = msub.add_parser(name, help=help_text)
        q.add_argument("--config", metavar="PATH", help="YAML config whose memory section names the file (default: built-in defaults)")
        q.add_argument("--db", metavar="PATH", help="memory file to use instead of the config's state_dir/db_name")
        q.set_defaults(func=run)
        return q

    add("list", "print every stored pair as a JSON line")
    q = add("forget", "delete a pair")
    q.add_argument("pair_id", type=int, metavar="ID")
    q = add("label", "name a pair (an empty TEXT clears the name)")
    q.add_argument("pair_id", type=int, metavar="ID")
    q.add_argument("text", metavar="TEXT")
    q = add("export", "write every pair to a new directory (wav + png + json each, a png per further view, plus index.json)")
    q.add_argument("dir", metavar="DIR")
    q = add("import", "add the pairs of an export directory (all or nothing; pairs already stored are skipped)")
    q.add_argument("dir", metavar="DIR")
    add("check", "run SQLite's integrity check and verify every pair's and view's bytes (exit 1 on any problem)")


def run(args: argparse.Namespace) -> int:
    """Open the file and do the one action (holding the state directory's lock when it changes the file)."""
    prog = f"showsay memory {args.memory_command}"
    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1
    path = Path(args.db).expanduser() if args.db else cfg.memory.path
    action = args.memory_command
    lock = None
    try:
        if action in CHANGING and (action == "import" or path.parent.is_dir()):  # no directory: no memory, Memory says so
            lock = StateDirLock(path.parent, holder=prog).acquire()
        with Memory(path, create=action == "import", busy_timeout_ms=cfg.memory.busy_timeout_ms) as memory:
            return _act(memory, args, prog)
    except StateDirInUse as exc:
        if exc.holder == DAEMON_HOLDER:
            hint = f"use 'showsay {action}' so the daemon changes it and what it holds in step" if action != "import" else "stop the daemon first"
            print(f"{prog}: {path}: in use by the showsay daemon (pid {exc.pid}); {hint}", file=sys.stderr)
        else:
            print(f"{prog}: {path}: in use by '{exc.holder}' (pid {exc.pid}); try again when it has finished", file=sys.stderr)
        return 1
    except MemoryError_ as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1
    finally:
        if lock is not None:
            lock.release()


def _act(memory: Memory, args: argparse.Namespace, prog: str) -> int:
    action = args.memory_command
    if action == "list":
        encoders = memory.encoder_ids()
        for pair in memory.pairs():
            print(json.dumps({**pair.summary(), "encoders": encoders.get(pair.pair_id, [])}))
        return 0
    if action == "forget":
        if not memory.forget(args.pair_id):
            print(f"{prog}: no pair {args.pair_id} in {memory.path}", file=sys.stderr)
            return 1
        print(json.dumps({"pair_id": args.pair_id, "forgotten": True}))
        return 0
    if action == "label":
        memory.label(args.pair_id, args.text or None)
        print(json.dumps({"pair_id": args.pair_id, "label": args.text or None}))
        return 0
    if action == "export":
        n = memory.export(args.dir)
        print(json.dumps({"exported": n, "dir": str(Path(args.dir).resolve())}))
        return 0
    if action == "import":
        ids = memory.import_(args.dir)
        print(json.dumps({"imported": ids}))
        return 0
    problems = memory.check()  # check
    for problem in problems:
        print(json.dumps({"problem": problem}))
    if problems:
        print(f"{prog}: {memory.path}: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    print(json.dumps({"ok": True, "pairs": len(memory), "views": len(memory) + memory.view_count(), "schema_version": SCHEMA_VERSION, "path": str(memory.path)}))
    return 0
