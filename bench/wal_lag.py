"""What SQLite's write-ahead log holds while one client pushes as fast as it is answered: how
often the log starts over, how long it gets, and how much of it is not yet copied into the
database, alone and then during a garbage collection (bench/README.md, "SQLite's checkpoints").

`moorage serve --workers 2` on gc_load.py's database (100,000 blobs, 20,000 manifests, 10% of
them garbage); a thread samples the log's index (the ``-shm`` file: ``mxFrame`` and
``nBackfill``, https://www.sqlite.org/walformat.html) every half millisecond while gc_load.py's
push loop runs ``--seconds``, then again once ``moorage gc`` has held its lease for 3 s. A commit
that finds the log past ``wal_autocheckpoint`` pages copies what is not yet copied itself,
holding the writer lock: the "uncopied" figures say how much such a commit would have to copy.
The sampler runs in the client's process, so the push rates here are lower than gc_load.py's.

    python bench/wal_lag.py [--seconds 5] [--max-duty 0.025] [--moorage .venv/bin/moorage]
"""

from __future__ import annotations

import argparse
import os
import shutil
import struct
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from gc_load import collecting, prepare, push_loop
from servers import moorage_server

#: (monotonic time, pages in the log, pages of it copied into the database)
Sample = tuple[float, int, int]


def sample(shm: Path, stop: threading.Event, into: list[Sample]) -> None:
    fd = os.open(shm, os.O_RDONLY)
    try:
        while not stop.is_set():
            header = os.pread(fd, 136, 0)
            (frames,) = struct.unpack_from("=I", header, 16)
            (copied,) = struct.unpack_from("=I", header, 96)
            into.append((time.monotonic(), frames, copied))
            time.sleep(0.0005)
    finally:
        os.close(fd)


def describe(samples: list[Sample]) -> str:
    restarts = [
        samples[i - 1][1] for i in range(1, len(samples)) if samples[i][1] < samples[i - 1][1]
    ]
    uncopied = sorted(frames - copied for _, frames, copied in samples)
    restarts.sort()
    at_restart = (
        f"pages at a restart median {restarts[len(restarts) // 2]}, max {restarts[-1]}"
        if restarts
        else "no restart"
    )
    return (
        f"log started over {len(restarts)} times ({at_restart}); longest log "
        f"{max(s[1] for s in samples)} pages; uncopied pages median "
        f"{uncopied[len(uncopied) // 2]}, p99 {uncopied[int(len(uncopied) * 0.99)]}, "
        f"max {uncopied[-1]}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--max-duty", default="0.025")
    parser.add_argument("--moorage", default=str(Path(".venv/bin/moorage").resolve()))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="moorage-wal-lag-") as tmp:
        workdir = Path(tmp)
        prepare(workdir / "template")
        shutil.copytree(workdir / "template", workdir / "moorage-data")
        env = {"MOORAGE_GC__INTERVAL": "0", "MOORAGE_GC__MAX_DUTY": args.max_duty}
        data = workdir / "moorage-data"
        collector: subprocess.Popen[bytes] | None = None
        with moorage_server(args.moorage, workdir, 2, env=env) as server:
            try:
                for window in ("alone", "during gc"):
                    if window == "during gc":
                        argv = [args.moorage, "gc", "--data-dir", str(data), "--grace", "0s"]
                        collector = subprocess.Popen(
                            [*argv, "--quick"],
                            stdout=subprocess.DEVNULL,
                            env={**os.environ, **env},
                        )
                        collecting(data / "moorage.db")
                        time.sleep(3)
                    stop, samples = threading.Event(), list[Sample]()
                    sampler = threading.Thread(
                        target=sample, args=(data / "moorage.db-shm", stop, samples)
                    )
                    sampler.start()
                    pushes = push_loop(server.url, args.seconds, 1 if window == "alone" else 2)
                    stop.set()
                    sampler.join()
                    print(f"{window}: {pushes}")
                    print(f"  {describe(samples)}")
            finally:
                if collector is not None:
                    collector.kill()
                    collector.wait()


if __name__ == "__main__":
    main()
