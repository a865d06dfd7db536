"""The embedded broker (REDIS_URL unset): Kombu's filesystem transport, with its message files written whole.

Kombu 5.7's filesystem transport creates a message file, then locks it and writes the message into it; a
worker polling the folder can move the file away between the two (the lock is advisory, a rename ignores it)
and read it empty. The worker then stops on a JSONDecodeError, and the message is lost. The soak hit it about
every seven minutes with a 0.1 s polling interval (tests/benchmarks/RESULTS.md, "Background work"). Here a
message is written to a hidden temporary name in the same folder and renamed into place, which is atomic: a
worker sees a whole message or none. A message taken by a worker is moved to the broker's own ``processed``
folder (the same filesystem, so a rename) rather than to the system's temporary folder, then deleted.
"""

from __future__ import annotations

import os
import uuid
from time import monotonic

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.transport.virtual import Empty
from kombu.utils.encoding import bytes_to_str, str_to_bytes
from kombu.utils.json import dumps, loads


class Channel(filesystem.Channel):
    def _put(self, queue, payload, **kwargs):
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        # A leading dot: the consumer only takes "<stamp>_<uuid>.<queue>.msg" names.
        temporary = os.path.join(self.data_folder_out, f".{name}.part")
        try:
            with open(temporary, "wb") as f:
                f.write(str_to_bytes(dumps(payload)))
            os.replace(temporary, final)
        except OSError as exc:
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc

    def _get(self, queue):
        wanted = f"{queue}.msg"
        for filename in sorted(os.listdir(self.data_folder_in)):
            if filename.partition(".")[2] != wanted:
                continue
            taken = os.path.join(self.processed_folder, filename)
            try:
                # Whoever renames it first owns it; the others see it gone and go on.
                os.replace(os.path.join(self.data_folder_in, filename), taken)
            except OSError:
                continue
            try:
                with open(taken, "rb") as f:
                    payload = f.read()
                if not self.store_processed:
                    os.remove(taken)
            except OSError as exc:
                raise ChannelError(f"Cannot read file {taken!r} from queue.") from exc
            return loads(bytes_to_str(payload))
        raise Empty()


class Transport(filesystem.Transport):
    Channel = Channel
