"""SQLite's write-ahead log copied into the database by a thread of each server process, not
by the commit of a request.

SQLite copies its log into the database (a *checkpoint*: every page written since the last
one, then fsyncs) inside the commit that takes the log past ``wal_autocheckpoint`` pages,
holding the writer lock all along. At SQLite's default of 1,000 pages a steady stream of small
pushes (about ten pages each) made one push in about a hundred copy the whole log: 3-5 ms on
top of its ~1.5 ms, with every writer waiting behind it, so that a busy registry's push p99 was
the length of that checkpoint (bench/README.md, "SQLite's checkpoints"). Here a thread checkpoints
passively every ``every`` seconds, outside the writer lock (writers go on committing meanwhile),
so the log never holds more than that long's writes uncopied; and the commits' own threshold is
raised to :data:`AUTOCHECKPOINT_PAGES`, a backstop: SQLite starts its log over only after a
checkpoint that copied everything, which a passive one rarely manages while writers keep
appending, so under a steady load a commit still reaches the backstop now and then, and
then copies only what arrived since this thread's last pass.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from moorage.metadata.sql import SqlMetadataStore

log = logging.getLogger(__name__)

# Every commit's threshold (PRAGMA wal_autocheckpoint, set on each connection): a log of up to
# this many pages (4 KiB each) before a commit checkpoints it itself.
AUTOCHECKPOINT_PAGES = 4000
# How often each server process copies the log: about 250 pages at a steady 600 small pushes a
# second, a millisecond or two of copying and two fsyncs, none of it under the writer lock.
CHECKPOINT_EVERY = 0.05


class WalCheckpointer:
    """The thread that checkpoints ``store``'s log (SQLite, file-backed) every ``every``
    seconds until :meth:`stop`."""

    def __init__(self, store: SqlMetadataStore, every: float = CHECKPOINT_EVERY) -> None:
        self._store = store
        self._every = every
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._run, name="moorage-wal-checkpoint", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        warned = False
        while not self._stopping.wait(self._every):
            try:
                self._store.checkpoint_log()
            except Exception as error:  # the next pass tries again; commits still have theirs
                if not warned:
                    log.warning("copying SQLite's log failed (the next passes retry): %s", error)
                    warned = True
